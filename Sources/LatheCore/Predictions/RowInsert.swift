import Foundation
import LatheRunner
import LatheStore

/// The insert of a queued prediction's row, which everything that writes to the row waits for.
/// Its value is true when it wrote the prediction finished (its ending has nothing to update).
package enum RowInsert: Sendable {
    /// Inserted as it starts, at once.
    case started(Task<Bool, any Error>)
    /// Written by its ending or after a delay, whichever comes first (``DeferredInsert``).
    case deferred(DeferredInsert)

    package var value: Bool {
        get async throws { try await result.get() }
    }

    package var result: Result<Bool, any Error> {
        get async {
            switch self {
            case .started(let task): await task.result
            case .deferred(let deferred): await deferred.result()
            }
        }
    }
}

/// The row of a `Prefer: wait` prediction without a webhook, which nobody can look up before
/// the answer names it. It is written once, by whichever comes first:
/// - the prediction's ending (``Scheduler/end(_:)``), which inserts it finished in one statement
///   and only then wakes the request waiting for it; or
/// - a timer, `delay` after it was queued, which inserts it as it starts (a prediction that runs
///   longer must be found, and listed, while it runs).
/// Nothing runs until one of them comes: most predictions end first, and then no task is
/// started and no thread woken for the row.
package final class DeferredInsert: @unchecked Sendable {
    /// The prediction as queued (its ending fills in how it ended).
    package let row: PredictionRecord
    package let checkSafety: Bool
    private let claim: (replica: String, id: String)
    private let store: PredictionStore
    private let lock = NSLock()
    private var state = State.open
    private var waiters: [CheckedContinuation<Result<Bool, any Error>, Never>] = []
    private var timer: Deadlines.Token?

    private enum State {
        case open
        /// The timer came first: the row is being inserted as it starts.
        case inserting
        /// The ending took the row and is writing it finished.
        case ending
        case done(Result<Bool, any Error>)
    }

    package init(row: PredictionRecord, claim: (replica: String, id: String), checkSafety: Bool, store: PredictionStore, delay: TimeInterval = 0.05) {
        self.row = row
        self.claim = claim
        self.checkSafety = checkSafety
        self.store = store
        let timer = Deadlines.shared.after(delay) { [weak self] in self?.expire() }
        lock.withLock { self.timer = timer }
    }

    /// For the ending: true when the row is not written and the timer will not write it; the
    /// caller then inserts it finished and reports with ``wrote(_:)``.
    package func takeForEnding() -> Bool {
        let (taken, timer) = lock.withLock { () -> (Bool, Deadlines.Token?) in
            guard case .open = state else { return (false, nil) }
            state = .ending
            return (true, self.timer)
        }
        if let timer { Deadlines.shared.cancel(timer) }
        return taken
    }

    /// The ending's insert of the finished row is done (or failed).
    package func wrote(_ result: Result<Void, any Error>) {
        finish(result.map { true })
    }

    /// Waits until the row is written (true: finished, by the ending) or could not be.
    package func result() async -> Result<Bool, any Error> {
        await withCheckedContinuation { continuation in
            let done = lock.withLock { () -> Result<Bool, any Error>? in
                if case .done(let result) = state { return result }
                waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    private func expire() {
        let start = lock.withLock { () -> Bool in
            guard case .open = state else { return false }
            state = .inserting
            return true
        }
        guard start else { return }
        let row = row, claim = claim, checkSafety = checkSafety, store = store
        Task {
            do {
                try await store.insert(row, claim: claim, checkSafety: checkSafety)
                finish(.success(false))
            } catch {
                finish(.failure(error))
            }
        }
    }

    private func finish(_ result: Result<Bool, any Error>) {
        let waiting = lock.withLock { () -> [CheckedContinuation<Result<Bool, any Error>, Never>] in
            state = .done(result)
            defer { waiters = [] }
            return waiters
        }
        for waiter in waiting { waiter.resume(returning: result) }
    }
}
