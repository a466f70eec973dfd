import Foundation
import LatheRunner

/// Sends one prediction's logs and streamed items to its source in batches, in order: whatever
/// arrived within `interval` goes in one report, so streamed output reaches the server (and its
/// SSE clients) while the prediction runs, without a request per line.
final class EventBatcher: @unchecked Sendable {
    private let send: @Sendable ([WorkerEvent]) async -> Void
    private let interval: TimeInterval
    private let lock = NSLock()
    private var waiting: [WorkerEvent] = []
    private var sender: Task<Void, Never>?

    init(interval: TimeInterval, send: @escaping @Sendable ([WorkerEvent]) async -> Void) {
        self.send = send
        self.interval = interval
    }

    /// Called by the model process's reader for every event.
    func add(_ event: RunnerEvent) {
        lock.withLock {
            waiting.append(WorkerEvent(event))
            if sender == nil { sender = Task { await self.run() } }
        }
    }

    /// Sends batches until nothing is left, waiting `interval` before each so events gather.
    private func run() async {
        while true {
            if interval > 0 { try? await Task.sleep(nanoseconds: UInt64(interval * 1_000_000_000)) }
            let batch = lock.withLock { () -> [WorkerEvent] in
                defer { waiting.removeAll() }
                if waiting.isEmpty { sender = nil }
                return waiting
            }
            if batch.isEmpty { return }
            // Not cancelled by ``finish()``, which only cuts the gathering short: a cancelled
            // request would be cut off mid-body, and its events lost.
            let send = self.send
            await Task { await send(batch) }.value
        }
    }

    /// Sends what is left at once (no more gathering: the sender's wait is cancelled, never a
    /// batch on its way) and waits until every event was sent.
    func finish() async {
        while let running = lock.withLock({ sender }) {
            running.cancel()
            await running.value
        }
    }
}
