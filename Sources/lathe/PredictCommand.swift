import ArgumentParser

struct PredictCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run one prediction locally, through the same runner and sandbox the registry uses."
    )

    @OptionGroup var options: LocalRun

    func run() async throws {
        try await options.run(.predict)
    }
}

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Run the model's train: entry point locally, in the same runner and sandbox as its predictions, and write the trained weights.",
        discussion: "Inputs are those under train: inputs: in lathe.yaml. The files train returns (Cog's TrainingOutput(weights=Path(...)) or a Path) are written to -o, ./weights by default."
    )

    @OptionGroup var options: LocalRun

    @Option(name: .shortAndLong, help: "Also make a new version, NAME[:TAG], of the model with the trained weights (its setup(weights) gets them), as a training on the registry does.")
    var tag: String?

    func run() async throws {
        try await options.run(.train, tag: tag)
    }
}
