import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// Waiting for a prediction's end, here or on another replica.
extension Scheduler {
    /// Returns when the prediction has finished or `seconds` have passed: the finished record
    /// when this replica wrote its ending (so the answer needs no second look; its row exists),
    /// else nil.
    /// A waiter is one continuation and a deadline (``Deadlines``), cancelled when the
    /// prediction ends first: that wakes no thread, where a sleeping task would be woken once
    /// per waiter, on the answer's path or 50 ms after it.
    @discardableResult
    package func wait(for id: String, seconds: TimeInterval) async -> PredictionRecord? {
        if completed.contains(id) { return unpersisted[id] }
        lastWaiter += 1
        let token = lastWaiter
        let timer = Deadlines.shared.after(seconds) { [weak self] in
            Task { await self?.expire(id, token) }
        }
        if registry.database.kind == .postgres, claims[id] == nil {
            // Running on another replica: its NOTIFY wakes this waiter; a notification lost
            // while the events connection reconnected is caught by looking at the row each second.
            let store = predictions
            Task { [weak self] in
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline {
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                    guard let self, await self.isWaiting(id, token) else { return }
                    if let row = try? await store.prediction(id), row.isTerminal { await self.finished(id); return }
                }
            }
        }
        return await withCheckedContinuation { waiters[id, default: [:]][token] = Waiter(continuation: $0, timer: timer) }
    }

    /// One caller waiting for a prediction's end, until its timer runs out.
    struct Waiter {
        var continuation: CheckedContinuation<PredictionRecord?, Never>
        var timer: Deadlines.Token
    }

    func isWaiting(_ id: String, _ token: UInt64) -> Bool { waiters[id]?[token] != nil }

    package func isRunning(_ id: String) -> Bool { running[id] != nil }

    package func expire(_ id: String, _ token: UInt64) {
        if let waiter = waiters[id]?.removeValue(forKey: token) { waiter.continuation.resume(returning: nil) }
        if waiters[id]?.isEmpty == true { waiters.removeValue(forKey: id) }
    }

    /// Wakes this replica's waiters for a prediction whose ending is written. When this replica
    /// wrote it, they are handed its record (``unpersisted``: they need no second look); else nil.
    package func finished(_ id: String) {
        signals.changed(id)
        completed.insert(id)
        if completed.count > 10_000 { completed.removeAll() }
        let record = unpersisted[id]
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values {
            Deadlines.shared.cancel(waiter.timer)
            waiter.continuation.resume(returning: record)
        }
    }

    /// Wakes waiters here and, scaled out, on the other replicas.
    func publishFinished(_ id: String) async {
        finished(id)
        if registry.database.kind == .postgres { await events.publish(.finished(id)) }
    }
}
