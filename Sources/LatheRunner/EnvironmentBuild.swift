import Foundation
import LatheSpec

/// How model environments are built (DESIGN §6): the installer runs inside the same bubblewrap
/// sandbox as models, as an unprivileged user, seeing the system read-only, its own environment
/// folder and a private package cache as the only writable places, a private /tmp, nothing of
/// Lathe's data; with a time limit, an address-space limit and a disk limit. A package's build
/// backend (setup.py, any sdist) therefore runs with no more rights than a model. Its network is a
/// namespace of its own: the package index and public hosts are reached only through
/// ``BuildProxy``, which applies the egress policy, so build code cannot reach this machine's
/// loopback services, private networks or a cloud metadata address.
public struct EnvironmentBuild: Sendable {
    /// The sandbox builds run in; nil runs them unconfined (only when the operator chose
    /// `LATHE_SANDBOX=none`).
    public var sandbox: Sandbox?
    /// What requirements may name.
    public var policy = RequirementPolicy()
    /// Where a build may connect besides the package index (the registry's `--allow-outbound`).
    public var egress = EgressPolicy()
    public var timeout: TimeInterval = 15 * 60
    /// Address-space limit of the installer and everything it starts.
    public var memoryBytes: Int64 = 8 << 30
    /// The most the environment (and its build cache) may grow to.
    public var diskBytes: Int64 = 10 << 30

    public init(sandbox: Sandbox?, policy: RequirementPolicy = RequirementPolicy()) {
        self.sandbox = sandbox
        self.policy = policy
    }

    /// Builds on an author's own machine (`lathe predict`, `lathe validate --import`): the
    /// requirements are the author's, so direct references and any address are theirs to use;
    /// the build is still sandboxed and still goes out through the proxy.
    public static func authorsOwn(sandbox: Sandbox?) -> EnvironmentBuild {
        var build = EnvironmentBuild(sandbox: sandbox, policy: RequirementPolicy(allowDirectReferences: true))
        build.egress = .unrestricted
        return build
    }

    /// Runs one installer step with the limits, streaming its output to `log` line by line.
    /// `writable` are the folders it may write (bound read-write inside the sandbox);
    /// `readable` are extra read-only binds (the interpreter, the installer binary).
    /// `python` (a real interpreter, readable inside) runs the forwarder to the build's proxy.
    /// `hosts` are reached like the package index (the operator's apt sources, for system packages).
    func run(_ command: [String], python: String, environment: [String: String], writable: [URL], readable: [String],
             hosts: Set<String> = [], log: @escaping @Sendable (String) -> Void) throws -> (status: Int32, tail: String) {
        var arguments = command
        var readable = readable
        var proxy: BuildProxy?
        defer { proxy?.stop() }
        if sandbox != nil {
            guard let forwarder = Bundle.module.url(forResource: "egress_forwarder", withExtension: "py")?.path else {
                throw Diagnostic(nil, "egress_forwarder.py is missing from Lathe's resources", fix: "reinstall Lathe")
            }
            let started = try BuildProxy(policy: egress, indexHosts: BuildProxy.indexHosts(environment: environment).union(hosts), log: log)
            proxy = started
            readable += [forwarder, started.socketPath]
            arguments = [python, forwarder, started.socketPath, "--"] + arguments
        }
        var executable = arguments[0]
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit") {
            // RLIMIT_AS bounds memory; RLIMIT_FSIZE bounds any one file the build writes.
            arguments = ["/usr/bin/prlimit", "--as=\(memoryBytes)", "--fsize=\(diskBytes)", "--"] + arguments
            executable = "/usr/bin/prlimit"
        }
        if let sandbox {
            var build = sandbox
            build.network = false  // only loopback inside; out through the proxy
            let mounts = Sandbox.Mounts(project: writable[0], readOnly: readable, writable: writable.map(\.path))
            arguments = build.arguments(mounts: mounts, environment: environment, command: arguments, chdir: writable[0].path)
            executable = sandbox.bwrap
        } else {
            arguments.removeFirst()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if sandbox == nil { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()

        let tail = TailBuffer()
        let reader = DispatchGroup()
        reader.enter()
        Thread.detachNewThread {
            let handle = pipe.fileHandleForReading
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                let text = String(decoding: chunk, as: UTF8.self)
                tail.append(text)
                log(text)
            }
            reader.leave()
        }
        // Time and disk are watched from here; the sandbox's PID namespace dies with bwrap.
        let started = Date()
        var violation: String?
        var tick = 0
        while process.isRunning {
            Thread.sleep(forTimeInterval: 0.5)
            tick += 1
            if Date().timeIntervalSince(started) > timeout {
                violation = "the environment build took longer than \(Int(timeout / 60)) minutes and was stopped"
            } else if tick % 4 == 0, Self.size(of: writable) > diskBytes {  // the folders are walked every 2 s
                violation = "the environment grew past \(diskBytes >> 30) GB and its build was stopped"
            }
            if violation != nil {
                kill(process.processIdentifier, SIGKILL)
                break
            }
        }
        process.waitUntilExit()
        reader.wait()
        if let violation {
            log(violation + "\n")
            return (137, violation)  // the reason, not whatever the killed installer printed last
        }
        return (process.terminationStatus, tail.text)
    }

    /// Bytes under `folders` (allocated blocks, so sparse files count as what they use).
    static func size(of folders: [URL]) -> Int64 {
        var total: Int64 = 0
        for folder in folders {
            guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.totalFileAllocatedSizeKey],
                                                              options: [], errorHandler: { _, _ in true }) else { continue }
            for case let url as URL in walker {
                total += Int64((try? url.resourceValues(forKeys: [.totalFileAllocatedSizeKey]))?.totalFileAllocatedSize ?? 0)
            }
        }
        return total
    }
}

/// The last 8 KiB of a build's output, for the error a failed build reports.
final class TailBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""

    func append(_ text: String) {
        lock.withLock {
            buffer += text
            if buffer.utf8.count > 16 << 10 { buffer = String(buffer.suffix(8 << 10)) }
        }
    }

    var text: String { lock.withLock { String(buffer.suffix(8 << 10)) } }

    /// The last `count` non-empty lines.
    func lines(_ count: Int) -> String {
        text.split(separator: "\n").suffix(count).joined(separator: "\n")
    }
}
