import Foundation
import LatheRunner
import LatheSpec
import LatheStore

/// Accumulates a running prediction's logs and streamed items, and says when to save them.
package final class Progress: @unchecked Sendable {
    package typealias Snapshot = (output: String?, logs: String, delta: ProgressDelta)
    private let lock = NSLock()
    private var logs = ""
    private var items: [JSONValue] = []
    /// Nothing is saved during the first 200 ms: quick predictions write only their result.
    private var saved = Date()
    /// How much of `items` and `logs` (UTF-8 bytes) earlier snapshots held.
    private var savedItems = 0, savedLogBytes = 0
    /// The last write, which the next one waits for (writes land in order).
    private var lastWrite: Task<Void, Never>?
    /// A save due when the 200 ms since the last one have passed (a ``Deadlines`` one: setting
    /// and cancelling it wakes no thread, where a dispatch timer woke libdispatch's on each).
    private var timer: Deadlines.Token?
    private var closed = false
    /// The last event's kind for webhooks ("output" or "logs").
    private var kind = "logs"
    private let flush: @Sendable (Progress, Snapshot, String) -> Void

    /// `logs` opens the prediction's logs (setup's output, why it runs again).
    package init(logs: String = "", flush: @escaping @Sendable (Progress, Snapshot, String) -> Void) {
        self.logs = logs
        self.flush = flush
    }

    package func add(_ event: RunnerEvent) {
        lock.lock()
        switch event {
        case .log(let text): logs += text; kind = "logs"
        case .output(_, let value): items.append(value); kind = "output"
        }
        let wait = 0.2 - Date().timeIntervalSince(saved)
        guard wait <= 0 else {
            if timer == nil && !closed {
                timer = Deadlines.shared.after(wait) { [weak self] in self?.due() }
            }
            lock.unlock()
            return
        }
        let snapshot = takeLocked(), kind = self.kind
        lock.unlock()
        flush(self, snapshot, kind)
    }

    private func due() {
        lock.lock()
        timer = nil
        guard !closed, items.count > savedItems || logs.utf8.count > savedLogBytes else { lock.unlock(); return }
        let snapshot = takeLocked(), kind = self.kind
        lock.unlock()
        flush(self, snapshot, kind)
    }

    /// The items streamed so far, as the output they make (nil when none): what a prediction
    /// that is canceled, times out or fails keeps, as Replicate's do.
    package var emitted: JSONValue? {
        lock.withLock { items.isEmpty ? nil : .array(items) }
    }

    /// No more saves: the prediction ended (its completion writes the rest).
    package func close() {
        lock.withLock {
            closed = true
            timer.map(Deadlines.shared.cancel)
            timer = nil
        }
    }

    private func takeLocked() -> Snapshot {
        saved = Date()
        let output = items.isEmpty ? nil : (try? JSON.canonical(JSONValue.array(items))).map { String(decoding: $0, as: UTF8.self) }
        // Logs only grow by whole texts, so the saved length is a character boundary.
        let delta = ProgressDelta(output: Array(items[savedItems...]), logs: String(decoding: logs.utf8.dropFirst(savedLogBytes), as: UTF8.self))
        savedItems = items.count
        savedLogBytes = logs.utf8.count
        return (output, logs, delta)
    }

    /// Runs `body` after every write started before it.
    package func write(_ body: @escaping @Sendable () async -> Void) {
        lock.lock(); defer { lock.unlock() }
        let previous = lastWrite
        lastWrite = Task {
            await previous?.value
            await body()
        }
    }
}
