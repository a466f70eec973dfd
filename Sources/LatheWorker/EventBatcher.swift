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
    /// The sender's wait while events gather; ``finish()`` cuts it short, never a batch on its
    /// way (a cancelled request would be cut off mid-body, and its events lost).
    private var nap: Task<Void, Never>?
    private var hurrying = false

    init(interval: TimeInterval, send: @escaping @Sendable ([WorkerEvent]) async -> Void) {
        self.send = send
        self.interval = interval
    }

    /// Called by the model process's reader for every event.
    func add(_ event: RunnerEvent) {
        lock.withLock {
            waiting.append(WorkerEvent(event))
            if sender == nil { sender = HotPath.task { await self.run() } }
        }
    }

    /// Sends batches until nothing is left, waiting `interval` before each so events gather.
    private func run() async {
        while true {
            let nanoseconds = UInt64(interval * 1_000_000_000)
            if nanoseconds > 0, let nap = lock.withLock({ () -> Task<Void, Never>? in
                guard !hurrying else { return nil }
                nap = Task { try? await Task.sleep(nanoseconds: nanoseconds) }
                return nap
            }) {
                await nap.value
            }
            let batch = lock.withLock { () -> [WorkerEvent] in
                defer { waiting.removeAll() }
                if waiting.isEmpty { sender = nil }
                return waiting
            }
            if batch.isEmpty { return }
            await send(batch)
        }
    }

    /// Sends what is left at once (no more gathering) and waits until every event was sent.
    func finish() async {
        while let running = lock.withLock({ () -> Task<Void, Never>? in
            hurrying = true
            nap?.cancel()
            return sender
        }) {
            await running.value
        }
    }
}
