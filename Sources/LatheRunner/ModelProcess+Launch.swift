import Foundation
import LatheSpec

extension ModelProcess.Configuration {
    /// How to start a command for this model: inside the sandbox when there is one, else directly
    /// in the model's folder. Both get the same small, explicit environment.
    public struct Launch: Sendable {
        public var executable: String
        public var arguments: [String]
        public var environment: [String: String]
        public var directory: URL
    }

    /// `command[0]` is the program; `extraReadOnly` are further paths it must read (the runner).
    public func launch(_ command: [String], extraReadOnly: [String] = []) throws -> Launch {
        var environment = [
            "PATH": self.environment.root.appendingPathComponent("bin").path + ":/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
            "LATHE_LOG_LIMIT": String(logLimit),
            "OMP_NUM_THREADS": ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] ?? "1",
        ]
        for key in ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"] {
            if let value = ProcessInfo.processInfo.environment[key] { environment[key] = value }
        }
        if let weights { environment["LATHE_WEIGHTS"] = weights }
        if let systemPrefix {
            // Bound at the same path inside the sandbox, so the folders are the same either way.
            let paths = SystemPackages.paths(systemPrefix.path)
            environment["PATH"] = self.environment.root.appendingPathComponent("bin").path + ":" + paths.bin.joined(separator: ":") + ":/usr/local/bin:/usr/bin:/bin"
            environment["LD_LIBRARY_PATH"] = paths.lib.joined(separator: ":")
        }
        environment.merge(gpus.environment) { _, gpu in gpu }
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        guard let sandbox else {
            environment["HOME"] = workDirectory.path
            return Launch(executable: command[0], arguments: Array(command.dropFirst()), environment: environment, directory: project)
        }
        environment["HOME"] = "/tmp"
        let mounts = Sandbox.Mounts(
            project: project,
            readOnly: [self.environment.root.path, self.environment.basePrefix] + (systemPrefix.map { [$0.path] } ?? []) + extraReadOnly + readOnlyPaths,
            writable: [workDirectory.path])
        // bwrap gets an empty environment of its own; --setenv passes ours inside.
        return Launch(executable: sandbox.bwrap, arguments: sandbox.arguments(mounts: mounts, environment: environment, command: command,
                                                                                      devices: gpus.devices),
                      environment: [:], directory: project)
    }
}
