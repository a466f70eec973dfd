import Foundation

/// Runs actions at their deadlines, for the timers a prediction sets and almost always cancels:
/// its timeout, the server's backstop for a worker's answer, a `Prefer: wait` waiter's limit,
/// the deferred `processing` write.
///
/// Why not `DispatchQueue.asyncAfter`: each one wakes libdispatch's timer thread when it is set,
/// and a prediction set four of them, so a 2 ms prediction paid for about six extra context
/// switches on a 2-core machine. Here one thread sleeps towards the earliest deadline: setting a
/// later one wakes nothing, setting one earlier than that by more than `slack` wakes it once,
/// and cancelling wakes nothing (the entry is just removed). A due action is handed to a
/// dispatch queue, so a slow one never holds up the others.
public final class Deadlines: @unchecked Sendable {
    /// The process's one clock.
    public static let shared = Deadlines(slack: 0.002)

    /// A set deadline, for ``cancel(_:)``.
    public struct Token: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        var at: DispatchTime
        var action: @Sendable () -> Void
    }

    private let condition = NSCondition()
    private let slack: UInt64
    private var entries: [UInt64: Entry] = [:]
    private var nextID: UInt64 = 0
    /// What the thread sleeps towards (`.distantFuture` when nothing is set).
    private var wakeAt = DispatchTime.distantFuture
    private var started = false

    /// `slack`: how much earlier than the one the thread sleeps towards a new deadline must be to
    /// wake it; an action may run up to that late.
    public init(slack: TimeInterval) {
        self.slack = UInt64(max(0, slack) * 1e9)
    }

    /// Runs `action` once `seconds` have passed, unless cancelled first.
    @discardableResult
    public func after(_ seconds: TimeInterval, _ action: @escaping @Sendable () -> Void) -> Token {
        let nanoseconds = UInt64(min(max(0, seconds), 1e9) * 1e9)
        let at = DispatchTime(uptimeNanoseconds: DispatchTime.now().uptimeNanoseconds &+ nanoseconds)
        condition.lock()
        defer { condition.unlock() }
        nextID += 1
        entries[nextID] = Entry(at: at, action: action)
        if !started {
            started = true
            // The thread holds the clock: a clock lives as long as the process.
            let thread = Thread { self.run() }
            thread.name = "lathe-deadlines"
            thread.start()
        } else if at.uptimeNanoseconds &+ slack < wakeAt.uptimeNanoseconds {
            condition.signal()
        }
        return Token(id: nextID)
    }

    /// Forgets a deadline whose action has not run (it never will).
    public func cancel(_ token: Token) {
        condition.lock()
        entries.removeValue(forKey: token.id)
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            let now = DispatchTime.now()
            var due: [@Sendable () -> Void] = []
            var earliest = DispatchTime.distantFuture
            for (id, entry) in entries {
                if entry.at <= now {
                    due.append(entry.action)
                    entries.removeValue(forKey: id)
                } else if entry.at < earliest {
                    earliest = entry.at
                }
            }
            for action in due { DispatchQueue.global().async(execute: action) }
            wakeAt = earliest
            if earliest == .distantFuture {
                condition.wait()
            } else {
                let seconds = Double(earliest.uptimeNanoseconds - now.uptimeNanoseconds) / 1e9
                _ = condition.wait(until: Date().addingTimeInterval(seconds))
            }
        }
    }
}
