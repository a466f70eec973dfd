import Foundation
import LatheRunner
import SQLKit

/// A registered `lathe worker` as every replica sees it (the `workers` table).
public struct WorkerRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    /// The worker token that registered it (every later request must carry the same one).
    public var tokenID: String
    public var version: String
    public var hardware: HardwareInventory
    /// Most instances the worker runs at once, whichever replica placed them.
    public var capacity: Int
    /// Version ids in the worker's cache.
    public var cached: Set<String>
    /// The instances its last heartbeat listed, and when that heartbeat came.
    public var reported: Set<String>
    public var reportedAt: Date
    /// Counted present until then (a long poll held by any replica pushes it forward).
    public var seenUntil: Date
    /// The replica a worker runs inside (`lathe serve`'s embedded worker), which alone places
    /// instances on it (its commands, files and reports never leave that process); nil for a
    /// `lathe worker`, on which every replica places.
    public var home: String?

    /// Every stored property, as the memberwise initializer would take them.
    package init(id: String, name: String, tokenID: String, version: String, hardware: HardwareInventory, capacity: Int,
                 cached: Set<String>, reported: Set<String>, reportedAt: Date, seenUntil: Date, home: String? = nil) {
        self.home = home
        self.id = id
        self.name = name
        self.tokenID = tokenID
        self.version = version
        self.hardware = hardware
        self.capacity = capacity
        self.cached = cached
        self.reported = reported
        self.reportedAt = reportedAt
        self.seenUntil = seenUntil
    }
}

/// An instance on a worker, and the replica that placed it and runs its predictions (the
/// `worker_instances` table): reports about it are relayed to that replica, its row counts
/// against the worker's capacity, and its model may be pulled with the worker's token.
public struct WorkerInstanceRecord: Sendable, Equatable {
    public var id: String
    public var workerID: String
    public var replica: String
    /// Where the other replicas reach the owner (``WorkerFleet`` relays reports there).
    public var replicaURL: String
    public var tokenID: String
    public var modelID: String

    /// Every stored property, as the memberwise initializer would take them.
    package init(id: String, workerID: String, replica: String, replicaURL: String, tokenID: String, modelID: String) {
        self.id = id
        self.workerID = workerID
        self.replica = replica
        self.replicaURL = replicaURL
        self.tokenID = tokenID
        self.modelID = modelID
    }
}

/// The fleet in the metadata store (DESIGN §6): workers, the instances each replica placed on
/// them, and the commands waiting for each worker's long poll. Any replica serves any worker:
/// whichever one holds a long poll takes the commands another replica queued (woken by an
/// event). Capacity is decided under a row lock on the worker (PostgreSQL) or in one statement
/// (SQLite, one writer), so two replicas never overfill a worker.
public struct WorkerStore: Sendable {
    package let database: RegistryDatabase
    var sql: any SQLDatabase { database.sql }

    public init(database: RegistryDatabase) {
        self.database = database
    }

    private struct WorkerRow: Decodable {
        package var id: String
        package var name: String
        var token_id: String
        package var version: String
        package var hardware: String
        package var capacity: Int
        package var cached: String
        package var reported: String
        var reported_at: String
        package var seen_until: String
        var home_replica: String?

        package var record: WorkerRecord {
            let decoder = JSONDecoder()
            let hardware = (try? decoder.decode(HardwareInventory.self, from: Data(self.hardware.utf8)))
                ?? HardwareInventory(cpus: 0, memoryBytes: 0, gpus: [], labels: [])
            return WorkerRecord(id: id, name: name, tokenID: token_id, version: version, hardware: hardware, capacity: capacity,
                                cached: Set((try? decoder.decode([String].self, from: Data(cached.utf8))) ?? []),
                                reported: Set((try? decoder.decode([String].self, from: Data(reported.utf8))) ?? []),
                                reportedAt: Timestamp.date(reported_at) ?? .distantPast, seenUntil: Timestamp.date(seen_until) ?? .distantPast,
                                home: home_replica)
        }
    }

    private struct InstanceRow: Decodable {
        package var id: String
        var worker_id: String
        package var replica: String
        var replica_url: String
        var token_id: String
        var model_id: String

        package var record: WorkerInstanceRecord {
            WorkerInstanceRecord(id: id, workerID: worker_id, replica: replica, replicaURL: replica_url, tokenID: token_id, modelID: model_id)
        }
    }

    private static let workerColumns: SQLQueryString = "id, name, token_id, version, hardware, capacity, cached, reported, reported_at, seen_until, home_replica"
    private static let instanceColumns: SQLQueryString = "id, worker_id, replica, replica_url, token_id, model_id"

    package static func json(_ names: Set<String>) -> String {
        String(decoding: (try? JSONEncoder().encode(names.sorted())) ?? Data("[]".utf8), as: UTF8.self)
    }

    // MARK: - Workers

    /// Registers `worker`. A worker registered before under the same name and token (it
    /// restarted) is removed with its instances and commands; their ids are returned.
    public func register(_ worker: WorkerRecord) async throws -> [String] {
        struct ID: Decodable { var id: String }
        let replaced = try await sql.raw("""
            DELETE FROM workers WHERE name = \(bind: worker.name) AND token_id = \(bind: worker.tokenID) RETURNING id
            """).all(decoding: ID.self).map(\.id)
        try await forget(replaced)
        let hardware = String(decoding: try JSONEncoder().encode(worker.hardware), as: UTF8.self)
        try await sql.raw("""
            INSERT INTO workers (\(Self.workerColumns)) VALUES (\(bind: worker.id), \(bind: worker.name), \(bind: worker.tokenID),
              \(bind: worker.version), \(bind: hardware), \(bind: worker.capacity), \(bind: Self.json(worker.cached)),
              \(bind: Self.json(worker.reported)), \(bind: Timestamp.string(worker.reportedAt)), \(bind: Timestamp.string(worker.seenUntil)),
              \(bind: worker.home))
            """).run()
        return replaced
    }

    /// The worker `id` if the token `tokenID` registered it.
    public func worker(_ id: String, tokenID: String) async throws -> WorkerRecord? {
        try await sql.raw("SELECT \(Self.workerColumns) FROM workers WHERE id = \(bind: id) AND token_id = \(bind: tokenID)")
            .first(decoding: WorkerRow.self)?.record
    }

    /// Every registered worker.
    public func workers() async throws -> [WorkerRecord] {
        try await sql.raw("SELECT \(Self.workerColumns) FROM workers ORDER BY id").all(decoding: WorkerRow.self).map(\.record)
    }

    /// Counts worker `id` present until `until` (never moving it back); false when it is gone.
    @discardableResult
    public func seen(_ id: String, until: Date) async throws -> Bool {
        let until = Timestamp.string(until)
        struct ID: Decodable { var id: String }
        return try await !sql.raw("""
            UPDATE workers SET seen_until = CASE WHEN seen_until < \(bind: until) THEN \(bind: until) ELSE seen_until END
            WHERE id = \(bind: id) RETURNING id
            """).all(decoding: ID.self).isEmpty
    }

    /// A long poll of worker `id` answered before its deadline: it counts as seen now, no longer
    /// until the deadline. False when the worker is gone.
    @discardableResult
    public func pollAnswered(_ id: String, at now: Date) async throws -> Bool {
        struct ID: Decodable { var id: String }
        return try await !sql.raw("UPDATE workers SET seen_until = \(bind: Timestamp.string(now)) WHERE id = \(bind: id) RETURNING id")
            .all(decoding: ID.self).isEmpty
    }

    /// A heartbeat: the worker's cache and instances now, and it was seen. Returns whether the
    /// cache changed (placement then looks again), nil when the worker is gone.
    public func heartbeat(_ id: String, cached: Set<String>, reported: Set<String>, at now: Date) async throws -> Bool? {
        struct Cached: Decodable { var cached: String }
        guard let before = try await sql.raw("SELECT cached FROM workers WHERE id = \(bind: id)").first(decoding: Cached.self) else { return nil }
        let stamp = Timestamp.string(now)
        try await sql.raw("""
            UPDATE workers SET cached = \(bind: Self.json(cached)), reported = \(bind: Self.json(reported)), reported_at = \(bind: stamp),
              seen_until = CASE WHEN seen_until < \(bind: stamp) THEN \(bind: stamp) ELSE seen_until END
            WHERE id = \(bind: id)
            """).run()
        return before.cached != Self.json(cached)
    }

    /// Removes the workers not seen since `cutoff`, with their instances and commands, and
    /// returns them (each to exactly one caller, however many replicas sweep at once).
    public func expire(notSeenSince cutoff: Date) async throws -> [WorkerRecord] {
        let gone = try await sql.raw("""
            DELETE FROM workers WHERE seen_until < \(bind: Timestamp.string(cutoff)) RETURNING \(Self.workerColumns)
            """).all(decoding: WorkerRow.self).map(\.record)
        try await forget(gone.map(\.id))
        return gone
    }

    /// Removes worker `id` with its instances and commands (it left: its server shut down).
    public func remove(_ id: String) async throws {
        try await sql.raw("DELETE FROM workers WHERE id = \(bind: id)").run()
        try await forget([id])
    }

    private func forget(_ workers: [String]) async throws {
        guard !workers.isEmpty else { return }
        try await sql.raw("DELETE FROM worker_instances WHERE worker_id IN \(SQLBind.group(workers))").run()
        try await sql.raw("DELETE FROM worker_commands WHERE worker_id IN \(SQLBind.group(workers))").run()
    }

    // MARK: - Instances

    /// Records an instance placed on its worker if the worker has room for one more (counting
    /// every replica's instances there) and is still registered; false otherwise. The lease
    /// runs to `until` and is renewed by the owner (``renew(replica:until:)``).
    public func reserve(_ instance: WorkerInstanceRecord, until: Date) async throws -> Bool {
        let lease = Timestamp.string(until)
        struct ID: Decodable { var id: String }
        // One statement: the count and the insert cannot be split by another writer on SQLite;
        // on PostgreSQL the worker's row is locked first, so racing replicas take turns.
        let insert: @Sendable (any SQLDatabase) async throws -> Bool = { sql in
            try await !sql.raw("""
                INSERT INTO worker_instances (\(Self.instanceColumns), lease_until)
                SELECT \(bind: instance.id), \(bind: instance.workerID), \(bind: instance.replica), \(bind: instance.replicaURL),
                  \(bind: instance.tokenID), \(bind: instance.modelID), \(bind: lease)
                FROM workers w WHERE w.id = \(bind: instance.workerID)
                  AND (SELECT COUNT(*) FROM worker_instances i WHERE i.worker_id = w.id) < w.capacity
                RETURNING id
                """).all(decoding: ID.self).isEmpty
        }
        guard database.kind == .postgres else { return try await insert(sql) }
        return try await database.transaction { session in
            try await session.raw("SELECT id FROM workers WHERE id = \(bind: instance.workerID) FOR UPDATE").run()
            return try await insert(session)
        }
    }

    /// Forgets an instance (it stopped); its slot on the worker is free again.
    public func release(_ id: String) async throws {
        try await sql.raw("DELETE FROM worker_instances WHERE id = \(bind: id)").run()
    }

    /// Extends the leases of the instances `replica` placed.
    public func renew(replica: String, until: Date) async throws {
        try await sql.raw("UPDATE worker_instances SET lease_until = \(bind: Timestamp.string(until)) WHERE replica = \(bind: replica)").run()
    }

    /// Forgets instances whose replica stopped renewing them before `now` (it died): the slots
    /// free up, and the worker's next heartbeat gets a `stop` for each.
    @discardableResult
    public func expireInstances(now: Date) async throws -> [WorkerInstanceRecord] {
        try await sql.raw("DELETE FROM worker_instances WHERE lease_until < \(bind: Timestamp.string(now)) RETURNING \(Self.instanceColumns)")
            .all(decoding: InstanceRow.self).map(\.record)
    }

    /// The instance `id` if it lives on worker `worker`.
    public func instance(_ id: String, on worker: String) async throws -> WorkerInstanceRecord? {
        try await sql.raw("SELECT \(Self.instanceColumns) FROM worker_instances WHERE id = \(bind: id) AND worker_id = \(bind: worker)")
            .first(decoding: InstanceRow.self)?.record
    }

    /// Every instance placed on the fleet, or on worker `worker`.
    public func instances(on worker: String? = nil) async throws -> [WorkerInstanceRecord] {
        let only: SQLQueryString = worker.map { " WHERE worker_id = \(bind: $0)" } ?? ""
        return try await sql.raw("SELECT \(Self.instanceColumns) FROM worker_instances\(only) ORDER BY id").all(decoding: InstanceRow.self).map(\.record)
    }

    /// Whether the worker token `tokenID` runs an instance of `modelID` now (it may pull it).
    public func mayPull(tokenID: String, modelID: String) async throws -> Bool {
        struct ID: Decodable { var id: String }
        return try await sql.raw("""
            SELECT id FROM worker_instances WHERE token_id = \(bind: tokenID) AND model_id = \(bind: modelID) LIMIT 1
            """).first(decoding: ID.self) != nil
    }

    // MARK: - Commands

    /// Queues `command` (JSON) for worker `worker`'s next long poll (nothing for a worker that is gone).
    public func send(_ worker: String, command: String) async throws {
        try await sql.raw("""
            INSERT INTO worker_commands (worker_id, command, created_at)
            SELECT \(bind: worker), \(bind: command), \(bind: Timestamp.now()) WHERE EXISTS (SELECT 1 FROM workers WHERE id = \(bind: worker))
            """).run()
    }

    /// The commands queued for `worker` after `after`, oldest first, with their numbers; the
    /// ones up to `after` (the worker received them) are deleted. A command stays until the
    /// worker acknowledges it, so an answer lost on the way is sent again.
    public func commands(_ worker: String, after: Int64) async throws -> [(seq: Int64, command: String)] {
        struct Row: Decodable { var seq: Int64; var command: String }
        try await sql.raw("DELETE FROM worker_commands WHERE worker_id = \(bind: worker) AND seq <= \(bind: after)").run()
        return try await sql.raw("""
            SELECT seq, command FROM worker_commands WHERE worker_id = \(bind: worker) AND seq > \(bind: after) ORDER BY seq
            """).all(decoding: Row.self).map { ($0.seq, $0.command) }
    }
}
