import Foundation
import LatheSpec
import LatheTestSupport

/// Runs the built `lathe` executable as a user would, with its own LATHE_HOME.
enum CLI {
    /// The `lathe` binary built next to the test bundle.
    static let binary: URL = {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lathe")
        if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
        return TestSupport.repositoryRoot.appendingPathComponent(".build/debug/lathe")
    }()

    /// One Lathe home for the whole run, so Python environments are built once per requirements.
    static let home = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-e2e-\(ProcessInfo.processInfo.processIdentifier)")

    @discardableResult
    static func run(_ arguments: [String], home: URL = CLI.home, directory: URL? = nil, environment extra: [String: String] = [:]) throws -> ChildProcess.Result {
        var environment = extra.merging(["LATHE_HOME": home.path]) { _, new in new }
        // Operator commands on a data folder use that folder's database (PostgreSQL when the tests run on it).
        if let index = arguments.firstIndex(of: "--data"), index + 1 < arguments.count {
            environment.merge(try TestDatabase.environment(forData: arguments[index + 1])) { _, new in new }
        }
        return try TestSupport.run(binary.path, arguments, environment: environment, directory: directory)
    }

    /// Runs `lathe … --json` and decodes its one JSON object.
    static func json(_ arguments: [String], home: URL = CLI.home) throws -> [String: JSONValue] {
        let result = try run(arguments + ["--json"], home: home)
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: result.stdout) else {
            throw CLIFailure(arguments: arguments, result: result)
        }
        return object
    }

    /// Starts `lathe` without waiting, for tests that signal it.
    static func start(_ arguments: [String]) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["LATHE_HOME"] = home.path
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return (process, out, err)
    }
}

struct CLIFailure: Error, CustomStringConvertible {
    var arguments: [String]
    var result: ChildProcess.Result
    var description: String { "lathe \(arguments.joined(separator: " ")) exited \(result.status): \(result.output)\n\(result.stderrText)" }
}
