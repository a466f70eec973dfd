import ArgumentParser
import Foundation
import LatheRunner
import LatheSpec
import LatheArchive

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check lathe.yaml and the predict entry point without running the model."
    )

    @Argument(help: "The project folder.")
    var directory: String = "."

    @Flag(name: .customLong("import"), help: "Also import the predictor inside the model's Python environment.")
    var importModule = false

    @Flag(help: "Fill or update inputs: in lathe.yaml from predict()'s signature (types, defaults, Input(...) or Annotated metadata), and show the diff.")
    var write = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await guarded {
            let project = projectURL(directory)
            if write { try writeInputs(project) }
            let spec = try loadCheckedSpec(project)
            if importModule {
                try importPredictor(spec, project: project)
            }
            let warnings = try importWarnings(spec, project: project)
            if json {
                try printJSON(ValidateResult(valid: true, warnings: warnings.map(\.description)))
            } else {
                for warning in warnings { printError(warning.description) }
                let training = spec.train.map { "; \($0.entry.file) agrees with train: (\($0.inputs.count) inputs)" } ?? ""
                print("ok: lathe.yaml and \(spec.predict.file) agree (\(spec.inputs.count) inputs, output \(spec.output.type.rawValue))\(training)\(importModule ? "; the code imports" : "")")
            }
        }
    }

    struct ValidateResult: Encodable { var valid: Bool; var warnings: [String] }

    /// One warning per module the code imports at module level that nothing provides: the
    /// standard library, the project's own files, `cog` (Lathe's) and the listed requirements
    /// (what an already built environment has installed, else a name map) are checked.
    private func importWarnings(_ spec: ModelSpec, project: URL) throws -> [Diagnostic] {
        let requirements = try ModelBuilder.requirements(spec, project: project)
        let installed = PythonEnvironment.existing(python: spec.python, requirements: requirements, home: LocalStore.home)
            .map { ImportCheck.installedModules(sitePackages: $0.sitePackages(spec.python)) }
        let files = ImportCheck.codeFiles(project: project, entries: [spec.predict.file] + (spec.train.map { [$0.entry.file] } ?? []))
        let missing = ImportCheck.unprovided(try ImportCheck.imports(project: project, files: files), project: project,
                                             requirements: requirements, installed: installed)
        let listing = spec.requirements.map { "your \($0)" } ?? "python_packages in lathe.yaml"
        return missing.map { found in
            let distribution = ImportCheck.cogBrings.first { $0.module == found.module }?.distribution
            let because = distribution == nil ? "" : " (Cog images have it because the cog package depends on it; Lathe's do not)"
            return Diagnostic(SourceLocation(file: found.file, line: found.line, column: 1),
                              "warning: \(found.module) is imported, but it is not in the standard library, the project, or a listed requirement\(because)",
                              fix: "add \(distribution ?? "the package that provides \(found.module)") to \(listing)")
        }
    }

    /// Rewrites `inputs:` from the signature and prints what changed (on stderr with `--json`).
    private func writeInputs(_ project: URL) throws {
        let url = project.appendingPathComponent("lathe.yaml")
        let text = String(decoding: try Data(contentsOf: url), as: UTF8.self)
        let spec = try SpecParser.parse(text)
        let inspection = try PredictorInspection.inspect(project: project, file: spec.predict.file, symbol: spec.predict.symbol)
        if inspection.error != nil || inspection.predict == nil { throw Diagnostics(PredictorCheck.compare(spec, inspection)) }
        guard let updated = try InputsWriter.rewrite(text, spec: spec, inspection: inspection) else {
            let message = "lathe.yaml already declares the inputs of \(spec.predict.symbol).\(inspection.predict?.name ?? "predict")()"
            if json { printError(message) } else { print(message) }
            return
        }
        try Data(updated.utf8).write(to: url, options: .atomic)
        let diff = InputsWriter.diff(text, updated, name: "lathe.yaml")
        if json { printError(diff, terminator: "") } else { print(diff, terminator: "") }
    }

    /// Imports the predict module, and the train module when there is one, inside the model's
    /// environment and sandbox (importing runs the model's code, so it is confined like a
    /// prediction), reporting the failing line.
    private func importPredictor(_ spec: ModelSpec, project: URL) throws {
        try importEntry(spec.predict, spec: spec, project: project)
        if let train = spec.train { try importEntry(train.entry, spec: spec, project: project) }
    }

    private func importEntry(_ entry: EntryPoint, spec: ModelSpec, project: URL) throws {
        let prepared = try PreparedModel.project(project, spec: spec)
        let work = LocalStore.home.appendingPathComponent("work/\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let sandbox = try Sandbox.detect(network: spec.network)
        let quiet = json
        let configuration = try prepared.configuration(home: LocalStore.home, workDirectory: work, sandbox: sandbox,
                                                       build: EnvironmentBuild.authorsOwn(sandbox: sandbox)) { text in
            if !quiet { printError(text, terminator: "") }
        }
        let runner = try ModelProcess.runnerScript()
        let launch = try configuration.launch([configuration.environment.python.path, runner.path, "--entry", entry.description, "--import-only"],
                                              extraReadOnly: [runner.deletingLastPathComponent().path])
        let result = try ChildProcess.run(launch.executable, launch.arguments, environment: launch.environment, directory: launch.directory)
        guard result.status != 0 else { return }
        // Point at the deepest line of the model's file in the traceback, and quote the exception.
        let lines = result.stderrText.split(separator: "\n").map(String.init)
        let marker = "/\(entry.file)\", line "
        let line = lines.last { $0.contains(marker) }
            .flatMap { Int($0.components(separatedBy: marker).last?.prefix { $0.isNumber } ?? "") } ?? 1
        let exception = lines.last { !$0.hasPrefix(" ") } ?? "unknown error"
        let missing = exception.hasPrefix("ModuleNotFoundError")
        throw Diagnostic(SourceLocation(file: entry.file, line: line, column: 1), "importing \(entry.file) failed: \(exception)",
                         fix: missing ? "add the package to python_packages in lathe.yaml" : "fix the code (run `lathe validate --import` again to check)")
    }
}
