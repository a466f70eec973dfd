import Foundation
import LatheSpec

/// Builds the bubblewrap command line that confines a model process (DESIGN §6): a new user,
/// PID, IPC, UTS and network namespace, the system read-only, only the model's own files, its
/// Python environment and its work folder visible, a private /tmp, no capabilities.
public struct Sandbox: Sendable {
    /// What the sandboxed process may see.
    public struct Mounts: Sendable {
        /// The model's code, mounted read-only at ``Sandbox/projectMount``.
        public var project: URL
        /// Read-only binds at the same path inside (environment, base interpreter, runner).
        public var readOnly: [String]
        /// Writable binds at the same path inside (the instance's work folder).
        public var writable: [String]

        public init(project: URL, readOnly: [String], writable: [String]) {
            self.project = project
            self.readOnly = readOnly
            self.writable = writable
        }
    }

    /// Where the model's code appears inside the sandbox.
    public static let projectMount = "/src"
    public var bwrap: String
    public var network: Bool

    public init(bwrap: String, network: Bool) {
        self.bwrap = bwrap
        self.network = network
    }

    /// System folders every Python needs, bound read-only when they exist.
    static let systemPaths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    /// The few files of /etc a process needs; the rest (shadow, keys, …) stays hidden.
    static let etcPaths = ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/nsswitch.conf",
                           "/etc/hosts", "/etc/resolv.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives",
                           "/etc/mime.types", "/etc/fonts"]

    /// The sandbox to use: nil when bubblewrap is unavailable or `LATHE_SANDBOX=none`.
    /// With `LATHE_SANDBOX=require` a missing bubblewrap is an error.
    public static func detect(network: Bool) throws -> Sandbox? {
        let mode = ProcessInfo.processInfo.environment["LATHE_SANDBOX"] ?? "auto"
        if mode == "none" { return nil }
        guard let bwrap = try? ChildProcess.resolve("bwrap"), works(bwrap) else {
            if mode == "require" {
                throw Diagnostic(nil, "bubblewrap (bwrap) is not installed or cannot create namespaces here",
                                 fix: "install it (`apt-get install bubblewrap`) or set LATHE_SANDBOX=none to run unconfined")
            }
            return nil
        }
        return Sandbox(bwrap: bwrap, network: network)
    }

    nonisolated(unsafe) private static var checked: [String: Bool] = [:]
    private static let lock = NSLock()

    private static func works(_ bwrap: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if let known = checked[bwrap] { return known }
        let result = trial(bwrap) == nil
        checked[bwrap] = result
        return result
    }

    /// Runs `true` in every namespace a model gets. Nil when that works, else bubblewrap's own
    /// complaint (for `lathe doctor`).
    public static func trial(_ bwrap: String) -> String? {
        guard let result = try? ChildProcess.run(bwrap, ["--ro-bind", "/", "/", "--unshare-all", "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "true"]) else {
            return "\(bwrap) could not be started"
        }
        if result.status == 0 { return nil }
        let text = result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "exit status \(result.status)" : String(text.split(separator: "\n").last ?? "")
    }

    /// The full argument list: bwrap's options, then `command`.
    /// `chdir` is where the command starts (the project by default).
    /// `devices` are device nodes bound in besides bwrap's minimal /dev (an instance's GPUs).
    public func arguments(mounts: Mounts, environment: [String: String], command: [String], chdir: String = Sandbox.projectMount,
                          devices: [String] = []) -> [String] {
        var arguments = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                         "--uid", "65534", "--gid", "65534", "--hostname", "lathe"]
        if network { arguments.append("--share-net") }
        let fileManager = FileManager.default
        for path in Self.systemPaths + Self.etcPaths {
            guard let attributes = try? fileManager.attributesOfItem(atPath: path) else { continue }
            if attributes[.type] as? FileAttributeType == .typeSymbolicLink,
               let target = try? fileManager.destinationOfSymbolicLink(atPath: path) {
                arguments += ["--symlink", target, path]
            } else {
                arguments += ["--ro-bind", path, path]
            }
        }
        arguments += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for device in devices { arguments += ["--dev-bind", GPUAccess.hostPath(device), device] }
        for path in mounts.readOnly where fileManager.fileExists(atPath: path) {
            arguments += ["--ro-bind", path, path]
        }
        for path in mounts.writable {
            arguments += ["--bind", path, path]
        }
        arguments += ["--ro-bind", mounts.project.path, Self.projectMount]
        // The root bwrap builds is a tmpfs: make it read-only too, so the model writes only to
        // /tmp and its work folder.
        arguments += ["--remount-ro", "/", "--chdir", chdir, "--clearenv"]
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) {
            arguments += ["--setenv", key, value]
        }
        return arguments + ["--"] + command
    }
}
