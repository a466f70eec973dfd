import Foundation
import LatheSpec
import Logging
import Testing
@testable import LatheCore
@testable import LatheStore
import LatheTestSupport

/// The prediction queue and the events seam, one suite for every database behind them (SQLite
/// always, PostgreSQL with `LATHE_TEST_POSTGRES`; with CI=true a missing PostgreSQL fails in
/// `StoreSuiteTests`' "PostgreSQL is configured").
@Suite("StoreSuite: the prediction queue and the events, on SQLite and PostgreSQL", .serialized)
struct QueueStoreSuiteTests {
    typealias Backend = StoreSuiteTests.Backend
    static let backends = StoreSuiteTests.backends

    /// `count` waiting predictions, oldest first.
    static func enqueue(_ count: Int, in database: RegistryDatabase, prefix: String = "q") async throws -> [String] {
        let store = PredictionStore(database: database)
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var ids: [String] = []
        for index in 0..<count {
            let id = prefix + String(format: "%025d", index)
            try await store.insert(PredictionRecord(id: id, modelID: "m", model: "alice/hello", version: "v", creatorID: "u", source: "api",
                                                    status: .starting, input: "{}", output: nil, error: nil, logs: "", metrics: nil,
                                                    createdAt: Timestamp.string(start.addingTimeInterval(Double(index))), startedAt: nil,
                                                    completedAt: nil, dataRemoved: false, shared: false, webhook: nil, webhookEventsFilter: nil,
                                                    accountID: nil))
            ids.append(id)
        }
        return ids
    }

    @Test("claims: oldest first, up to the limit, each prediction to one replica even when they race", arguments: backends)
    func claims(_ backend: Backend) async throws {
        let database = try await StoreSuiteTests.open(backend)
        defer { Task { try? await database.close() } }
        let queue = PredictionQueue(database: database)
        let ids = try await Self.enqueue(3, in: database)
        let first = try await queue.claim(replica: "r1", limit: 2)
        #expect(first.map(\.record.id) == Array(ids.prefix(2)))
        #expect(Set(first.map(\.claimID)).count == 2 && first.allSatisfy { $0.claimID.hasPrefix("r1:") })
        #expect(try await queue.claim(replica: "r2", limit: 5).map(\.record.id) == [ids[2]])
        #expect(try await queue.claim(replica: "r3", limit: 5).isEmpty)

        // Twelve replicas' claims at once over 40 predictions: every one claimed exactly once.
        let many = try await Self.enqueue(40, in: database, prefix: "m")
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for replica in 0..<12 { group.addTask { try await queue.claim(replica: "race\(replica)", limit: 5).map(\.record.id) } }
            var all: [String] = []
            for try await ids in group { all += ids }
            return all
        }
        #expect(claimed.count == 40 && Set(claimed) == Set(many), "\(claimed.count) claims for 40 predictions")
    }

    @Test("cancel, release and renew: a claim holds its prediction, and only its own writes land", arguments: backends)
    func cancelReleaseRenew(_ backend: Backend) async throws {
        let database = try await StoreSuiteTests.open(backend)
        defer { Task { try? await database.close() } }
        let queue = PredictionQueue(database: database), store = PredictionStore(database: database)
        let ids = try await Self.enqueue(3, in: database)
        // Unclaimed: canceled at once.
        #expect(try await queue.cancelUnclaimed(ids[0]))
        #expect(try await store.prediction(ids[0])?.status == .canceled)
        #expect(try await queue.cancelUnclaimed(ids[0]) == false, "finished: nothing to cancel")
        let claimed = try await queue.claim(replica: "r1", limit: 2)
        #expect(claimed.map(\.record.id) == [ids[1], ids[2]])
        // Claimed: the holder is asked (it sees the flag among its claims).
        #expect(try await queue.cancelUnclaimed(ids[1]) == false)
        try await queue.requestCancel(ids[1])
        #expect(try await queue.cancelRequested(among: claimed.map(\.claimID)) == [ids[1]])
        // Given back by its holder (nowhere to run it): another replica takes it; a stale claim cannot.
        #expect(try await queue.release(ids[2], claim: "someone-else") == false)
        #expect(try await queue.release(ids[2], claim: claimed[1].claimID))
        let again = try await queue.claim(replica: "r2", limit: 5)
        #expect(again.map(\.record.id) == [ids[2]])
        #expect(again[0].claimID != claimed[1].claimID, "each claim has its own id")
        // Renewed leases outlive the old deadline.
        try await queue.renew([again[0].claimID])
        let expired = try await queue.expireLeases(now: Date().addingTimeInterval(PredictionQueue.lease / 2))
        #expect(expired.requeued.isEmpty && expired.failed.isEmpty)
        // A write from the released claim changes nothing.
        #expect(try await store.complete(ids[2], status: .succeeded, output: "1", error: nil, logs: "", metrics: "{}", claim: claimed[1].claimID) == false)
        #expect(try await store.complete(ids[2], status: .succeeded, output: "1", error: nil, logs: "", metrics: "{}", claim: again[0].claimID))
    }

    @Test("lost claims: requeued while nothing was produced and attempts remain, failed with a sentence otherwise", arguments: backends)
    func lostClaims(_ backend: Backend) async throws {
        let database = try await StoreSuiteTests.open(backend)
        defer { Task { try? await database.close() } }
        let queue = PredictionQueue(database: database), store = PredictionStore(database: database)
        let ids = try await Self.enqueue(2, in: database)
        let later = { Date().addingTimeInterval(PredictionQueue.lease * 2) }
        // ids[0] produced output before its replica vanished: it may have had effects, so it fails.
        let first = try await queue.claim(replica: "gone", limit: 2)
        try await store.updateProgress(ids[0], output: #"["x"]"#, logs: "", delta: .init(output: [.string("x")], logs: ""), startedAt: Timestamp.now(),
                                       claim: first[0].claimID)
        var expired = try await queue.expireLeases(now: later())
        #expect(expired.failed == [ids[0]] && expired.requeued == [ids[1]], "\(expired)")
        let failed = try #require(try await store.prediction(ids[0]))
        #expect(failed.status == .failed && failed.error?.contains("was lost") == true && failed.output == #"["x"]"#, "the output emitted is kept")
        #expect(try await store.prediction(ids[1])?.logs.contains("queued again") == true)
        // ids[1] is lost twice more: the third attempt's loss fails it.
        for attempt in 2...PredictionQueue.maxAttempts {
            #expect(try await queue.claim(replica: "gone\(attempt)", limit: 1).map(\.record.id) == [ids[1]])
            expired = try await queue.expireLeases(now: later())
            #expect(attempt < PredictionQueue.maxAttempts ? expired.requeued == [ids[1]] : expired.failed == [ids[1]])
        }
        #expect(try await store.prediction(ids[1])?.status == .failed)
    }

    @Test("a restarted replica fails what it was running and queues what it had not started; others' claims stay", arguments: backends)
    func restart(_ backend: Backend) async throws {
        let database = try await StoreSuiteTests.open(backend)
        defer { Task { try? await database.close() } }
        let queue = PredictionQueue(database: database), store = PredictionStore(database: database)
        let ids = try await Self.enqueue(3, in: database)
        let mine = try await queue.claim(replica: "r1", limit: 2)
        try await store.markProcessing(ids[0], claim: mine[0].claimID)
        let theirs = try await queue.claim(replica: "r2", limit: 1)
        try await store.markProcessing(ids[2], claim: theirs[0].claimID)
        let recovered = try await queue.recoverAfterRestart(replica: "r1")
        #expect(recovered.failed == [ids[0]] && recovered.requeued == [ids[1]], "\(recovered)")
        #expect(try await store.prediction(ids[0])?.error?.contains("restarted") == true)
        #expect(try await store.prediction(ids[2])?.status == .processing, "another replica's claim is untouched")
        #expect(try await queue.claim(replica: "r3", limit: 5).map(\.record.id) == [ids[1]])
    }

    /// Two replicas' event buses on one database: `LocalEvents` stands for one machine,
    /// `PostgresEvents` for replicas on PostgreSQL.
    static func buses(_ backend: Backend, _ database: RegistryDatabase, url: String?) throws -> [any PredictionEvents] {
        switch backend {
        case .sqlite:
            // One machine, one bus, always its leader.
            return [LocalEvents()]
        case .postgres:
            let url = try #require(url)
            var logger = Logger(label: "events-suite")
            logger.logLevel = .error
            return [try PostgresEvents(url: url, database: database, logger: logger), try PostgresEvents(url: url, database: database, logger: logger)]
        }
    }

    @Test("events: what one replica publishes reaches every replica, and exactly one leads; another takes over when it goes", arguments: backends)
    func events(_ backend: Backend) async throws {
        let (database, url) = try await StoreSuiteTests.openWithURL(backend)
        defer { Task { try? await database.close() } }
        let buses = try Self.buses(backend, database, url: url)
        let heard = Heard()
        // Two listeners: one per replica, or two handlers on the one machine's bus.
        for index in 0..<2 { buses[index % buses.count].subscribe { event in await heard.add(index, event) } }
        let services = buses.compactMap { $0 as? PostgresEvents }.map { bus in Task { try await bus.run() } }
        defer { services.forEach { $0.cancel() } }
        // Listening and leading take a moment on PostgreSQL.
        try await Self.eventually { buses.filter(\.isLeader).count == 1 }
        try await Task.sleep(nanoseconds: 300_000_000)
        await buses[0].publish(.finished("p1"))
        await buses[buses.count - 1].publish(.cancel("p2"))
        try await Self.eventually {
            let events = await heard.events
            return (0..<2).allSatisfy { index in events[index, default: []].contains(.finished("p1")) && events[index, default: []].contains(.cancel("p2")) }
        }
        #expect(RegistryEvent(payload: RegistryEvent.progress("x").payload) == .progress("x"))
        #expect(RegistryEvent(payload: "nonsense:") == nil)
        guard backend == .postgres else { return }
        // The leader's connection ends: the other replica leads within a few seconds.
        let leader = try #require(buses.firstIndex { $0.isLeader })
        services[leader].cancel()
        try await Self.eventually(seconds: 10) { !buses[leader].isLeader && buses[1 - leader].isLeader }
    }

    actor Heard {
        var events: [Int: [RegistryEvent]] = [:]
        func add(_ index: Int, _ event: RegistryEvent) { events[index, default: []].append(event) }
    }

    static func eventually(seconds: Double = 5, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(await condition(), "not within \(seconds) s")
    }
}
