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

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await guarded {
            let project = projectURL(directory)
            let spec = try loadCheckedSpec(project)
            if importModule {
                let prepared = try PreparedModel.project(project, spec: spec)
                let environment = try PythonEnvironment.ensure(python: spec.python, requirements: prepared.requirements,
                                                               home: LocalStore.home, log: { if !json { printError($0, terminator: "") } })
                let module = spec.predict.file
                let script = """
                import importlib.util, sys
                sys.path.insert(0, '.')
                spec = importlib.util.spec_from_file_location('predictor', \(String(decoding: try JSON.canonical(module), as: UTF8.self)))
                module = importlib.util.module_from_spec(spec)
                try:
                    import cog  # noqa
                except ImportError:
                    import types
                    shim = types.ModuleType('cog')
                    for name in ['BasePredictor', 'BaseRunner', 'Path', 'Secret', 'File', 'BaseModel', 'ConcatenateIterator', 'AsyncConcatenateIterator']:
                        setattr(shim, name, type(name, (object,), {}))
                    shim.Input = lambda default=None, **kwargs: default
                    sys.modules['cog'] = shim
                spec.loader.exec_module(module)
                getattr(module, \(String(decoding: try JSON.canonical(spec.predict.symbol), as: UTF8.self)))
                """
                let result = try ChildProcess.run(environment.python.path, ["-c", script], directory: project)
                guard result.status == 0 else {
                    throw Diagnostic(SourceLocation(file: module, line: 1, column: 1), "importing the predictor failed:\n\(result.stderrText)",
                                     fix: "fix the error above, or add the missing package to python_packages")
                }
            }
            if json {
                try printJSON(["valid": true])
            } else {
                print("ok: lathe.yaml and \(spec.predict.file) agree (\(spec.inputs.count) inputs, output \(spec.output.type.rawValue))\(importModule ? "; the predictor imports" : "")")
            }
        }
    }
}
