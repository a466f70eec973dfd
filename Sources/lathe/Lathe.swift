import ArgumentParser

/// The `lathe` command: package, run and publish machine-learning models.
@main
struct Lathe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Package machine-learning models into content-addressed archives, and run them.",
        version: "\(BuildInfo.version) (commit \(BuildInfo.commit))",
        subcommands: [
            InitCommand.self, ValidateCommand.self, SchemaCommand.self, BuildCommand.self, PredictCommand.self, TrainCommand.self,
            ImagesCommand.self, InspectCommand.self, RmCommand.self, ServeCommand.self, WorkerCommand.self, AdminCommand.self, DoctorCommand.self, LoginCommand.self, PushCommand.self, PullCommand.self, RunCommand.self,
        ]
    )
}
