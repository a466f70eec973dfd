import Foundation

/// Runs a short-lived helper program and collects its output.
public enum ChildProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: Data
        public var stderr: Data
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Runs `executable` (a path, or a name looked up on PATH) and waits for it.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           directory: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try resolve(executable))
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes concurrently so neither fills up and blocks the child.
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: outData, stderr: errData)
    }

    /// Finds a program by name on the server's PATH only: a name holding a slash (a path) is
    /// refused, so a value that reached here from a spec or a request cannot name a program.
    public static func onPath(_ name: String) throws -> String {
        guard !name.isEmpty, !name.contains("/"), !name.contains("\0") else {
            throw Diagnostic(nil, "\"\(name.prefix(64))\" is not a program name", fix: "name a program on PATH, not a path")
        }
        return try resolve(name)
    }

    /// Finds a program on PATH; a name with a slash is returned as it is (for the operator's own
    /// paths: use ``onPath(_:)`` for any name derived from a spec).
    public static func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Diagnostic(nil, "\(name) is not installed (not found on PATH)", fix: "install it, e.g. run `make setup`")
    }

    /// The Python used for static checks: `LATHE_PYTHON`, else the first `python3` on PATH that
    /// is a real interpreter. Version-manager shims (pyenv's are shell scripts) cost ~100 ms a
    /// start, and any Python 3.9+ can run the inspector, so they are skipped when another exists.
    public static let python: String = {
        let environment = ProcessInfo.processInfo.environment
        if let chosen = environment["LATHE_PYTHON"], !chosen.isEmpty { return chosen }
        let candidates = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/python3" }
            .filter { FileManager.default.isExecutableFile(atPath: $0) }
        return candidates.first { !$0.contains("/shims/") } ?? candidates.first ?? "python3"
    }()
}
