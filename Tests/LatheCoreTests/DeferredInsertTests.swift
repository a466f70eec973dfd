import Foundation
import Testing
@testable import LatheCore
@testable import LatheStore

/// A `Prefer: wait` prediction's row is written once: finished by its ending when that comes
/// first, else as it starts when the delay runs out (and then completed by its ending).
@Suite("the deferred insert of a waited-for prediction's row")
struct DeferredInsertTests {
    static func row(_ id: String) -> PredictionRecord {
        PredictionRecord(id: id, modelID: "m", model: "alice/hello", version: "v", creatorID: "u", source: "api", status: .starting, input: "{}",
                         output: nil, error: nil, logs: "", metrics: nil, createdAt: Timestamp.now(), startedAt: nil, completedAt: nil,
                         dataRemoved: false, shared: false, webhook: nil, webhookEventsFilter: nil, accountID: nil)
    }

    @Test("an ending that comes first writes the row finished; nothing is inserted before it")
    func endingFirst() async throws {
        let database = try await StoreSuiteTests.open(.sqlite)
        defer { Task { try? await database.close() } }
        let store = PredictionStore(database: database)
        let deferred = DeferredInsert(row: Self.row("e1"), claim: ("r", "r:e1:1"), checkSafety: true, store: store, delay: 0.2)
        #expect(deferred.takeForEnding())
        // The timer was cancelled: nothing writes the row while the ending has it.
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(try await store.prediction("e1") == nil)
        var finished = deferred.row
        finished.status = .succeeded
        finished.completedAt = Timestamp.now()
        try await store.insertFinished(finished, checkSafety: true)
        deferred.wrote(.success(()))
        #expect(try await RowInsert.deferred(deferred).value == true)
        #expect(try await store.prediction("e1")?.status == .succeeded)
    }

    @Test("a delay that runs out first inserts the row as it starts, and the ending can no longer take it")
    func delayFirst() async throws {
        let database = try await StoreSuiteTests.open(.sqlite)
        defer { Task { try? await database.close() } }
        let store = PredictionStore(database: database)
        let deferred = DeferredInsert(row: Self.row("t1"), claim: ("r", "r:t1:1"), checkSafety: true, store: store, delay: 0.05)
        // Waiting starts before the delay runs out and ends when the timer's insert is done.
        #expect(try await RowInsert.deferred(deferred).value == false)
        #expect(try await store.prediction("t1")?.status == .starting)
        #expect(!deferred.takeForEnding())
    }
}
