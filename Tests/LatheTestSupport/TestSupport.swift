import Foundation
import LatheSpec

/// Helpers shared by the test targets: throwaway folders and running programs.
public enum TestSupport {
    /// A fresh temporary folder holding `files` (path → text).
    public static func makeProject(_ files: [String: String]) throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for (path, text) in files {
            try write(text, to: root.appendingPathComponent(path))
        }
        return root
    }

    public static func write(_ text: String, to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// The repository's root, found from this source file.
    public static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A sample's folder under `samples/`.
    public static func sample(_ name: String) -> URL {
        repositoryRoot.appendingPathComponent("samples/\(name)")
    }

    /// Whether a program is installed (tests that need skopeo or bwrap say so when it is not).
    public static func has(_ program: String) -> Bool {
        (try? ChildProcess.resolve(program)) != nil
    }

    /// Runs a program to completion and returns its status and output.
    @discardableResult
    public static func run(_ program: String, _ arguments: [String], environment: [String: String] = [:],
                           directory: URL? = nil) throws -> ChildProcess.Result {
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        return try ChildProcess.run(program, arguments, environment: merged, directory: directory)
    }
}

extension ChildProcess.Result {
    public var output: String { String(decoding: stdout, as: UTF8.self) }
}
