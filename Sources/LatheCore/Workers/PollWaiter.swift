import Foundation
import LatheRunner

/// One long poll's wait: woken when a command is handed to it directly or stored for its worker,
/// ended at its deadline or when a newer poll of the same worker replaces it.
package final class PollWaiter: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Bool, Never>?
    private var handed: [WorkerCommand] = []
    private var woken = false
    private var over = false

    /// Takes `command` unless the poll is over; wakes it.
    package func hand(_ command: WorkerCommand) -> Bool {
        let resume = lock.withLock { () -> CheckedContinuation<Bool, Never>?? in
            guard !over else { return .none }
            handed.append(command)
            woken = true
            defer { continuation = nil }
            return .some(continuation)
        }
        guard case .some(let waiting) = resume else { return false }
        waiting?.resume(returning: true)
        return true
    }

    /// `stored` and what was handed over, in that order; when there is anything (or `final`),
    /// the poll is over from here on, so nothing handed later is taken by an answered poll.
    package func answer(with stored: [WorkerCommand], final: Bool = false) -> [WorkerCommand] {
        lock.withLock {
            let commands = stored + handed
            guard !commands.isEmpty || final else { return [] }
            over = true
            handed = []
            return commands
        }
    }

    /// Something was stored for the worker: look again.
    package func wake() { finish(over: false) }

    /// A newer poll of the same worker took over (or the worker is gone): this one answers now.
    func supersede() { finish(over: true) }

    package func expire(at deadline: Date) {
        DispatchQueue.global().asyncAfter(deadline: .now() + max(0, deadline.timeIntervalSinceNow)) { [weak self] in
            self?.finish(over: true)
        }
    }

    private func finish(over end: Bool) {
        let waiting = lock.withLock { () -> CheckedContinuation<Bool, Never>? in
            if end { over = true } else { woken = true }
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume(returning: !end)
    }

    /// Waits until woken (true: look again) or over (false).
    package func wait() async -> Bool {
        await withCheckedContinuation { continuation in
            let answer = lock.withLock { () -> Bool? in
                if woken {
                    woken = false
                    return true
                }
                if over { return false }
                self.continuation = continuation
                return nil
            }
            if let answer { continuation.resume(returning: answer) }
        }
    }
}
