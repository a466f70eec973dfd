import Foundation

/// Stops a sandboxed model that starts too many processes (a fork bomb).
///
/// The model runs as PID 1 of its own PID namespace (bubblewrap's `--unshare-pid`); every
/// process it starts is in that namespace. Ten times a second the watchdog counts the processes
/// of that namespace; past the limit it kills the namespace's first process, and the kernel then
/// kills every other process in it. (Resource limits cannot do this here: the sandbox user maps to
/// root, whom RLIMIT_NPROC does not restrain, and there is no cgroup to use.)
final class ProcessWatchdog: @unchecked Sendable {
    private let timer: DispatchSourceTimer
    private var namespace: String?
    private var initPID: Int32?
    private(set) var tripped = false

    init(bwrapPID: Int32, limit: Int, onTrip: @escaping @Sendable () -> Void) {
        timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + 0.1, repeating: 0.1)
        timer.setEventHandler { [unowned self] in
            if namespace == nil {
                // bwrap's first child is PID 1 of the model's namespace.
                guard let children = try? String(contentsOfFile: "/proc/\(bwrapPID)/task/\(bwrapPID)/children", encoding: .utf8),
                      let first = children.split(separator: " ").first.flatMap({ Int32($0) }),
                      let link = Self.namespace(of: first) else { return }
                namespace = link
                initPID = first
            }
            guard let namespace, let initPID, !tripped else { return }
            if Self.count(in: namespace, stopAt: limit + 1) > limit {
                tripped = true
                kill(initPID, SIGKILL)
                onTrip()
            }
        }
        timer.resume()
    }

    func stop() {
        timer.cancel()
    }

    static func namespace(of pid: Int32) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/pid")
    }

    /// Processes in the namespace, counting no further than `stopAt`.
    static func count(in namespace: String, stopAt: Int) -> Int {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return 0 }
        var count = 0
        for entry in entries where entry.first?.isNumber == true {
            if let pid = Int32(entry), self.namespace(of: pid) == namespace {
                count += 1
                if count >= stopAt { break }
            }
        }
        return count
    }
}
