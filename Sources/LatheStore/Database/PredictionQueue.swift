import Foundation
import LatheSpec
import SQLKit

/// The prediction queue (DESIGN §5): the `predictions` table itself. A prediction waiting to run
/// is a `starting` row; a replica that takes it *claims* it (`claimed_by`, a fresh `claim_id`,
/// `lease_until`, `attempts + 1`) and renews the lease while it holds it. Every write a claim
/// makes names its `claim_id`, so a replica that lost its lease cannot overwrite what another
/// finished. Expired leases are requeued when the prediction had produced no output and has
/// attempts left, or failed with a reason. One SQL implementation for SQLite and PostgreSQL: the
/// claim is a single `UPDATE … RETURNING` (PostgreSQL picks rows `FOR UPDATE SKIP LOCKED`, so
/// replicas never take the same one; SQLite runs one writer at a time).
public struct PredictionQueue: Sendable {
    /// The most times a prediction is started before a lost claim fails it.
    public static let maxAttempts = 3
    /// How long a claim holds without renewal.
    public static let lease: TimeInterval = 30

    let sql: any SQLDatabase
    package let kind: RegistryDatabase.Kind

    public init(database: RegistryDatabase) {
        sql = database.sql
        kind = database.kind
    }

    /// A claimed prediction, with what the replica needs to run it.
    package struct Claimed: Decodable, Sendable {
        package var record: PredictionRecord
        package var claimID: String
        package var checkSafety: Bool

        package enum CodingKeys: String, CodingKey { case claimID = "claim_id", checkSafety = "check_safety" }

        package init(from decoder: any Decoder) throws {
            record = try PredictionRecord(from: decoder)
            let container = try decoder.container(keyedBy: CodingKeys.self)
            claimID = try container.decode(String.self, forKey: .claimID)
            checkSafety = try container.decode(Bool.self, forKey: .checkSafety)
        }
    }

    static func leaseEnd(from now: Date = Date()) -> String { Timestamp.string(now.addingTimeInterval(lease)) }

    static func newClaimID() -> String { UUID().uuidString.lowercased() }

    /// Claims up to `limit` unclaimed waiting predictions, oldest first, for `replica`.
    package func claim(replica: String, limit: Int) async throws -> [Claimed] {
        let lock: SQLQueryString = kind == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        // The claim id is unique per claim: the replica's id, the prediction's and the attempt.
        let claimID: SQLQueryString = "\(bind: replica) || ':' || id || ':' || CAST(attempts + 1 AS TEXT)"
        let query: SQLQueryString = """
            UPDATE predictions SET claimed_by = \(bind: replica), claim_id = \(claimID), lease_until = \(bind: Self.leaseEnd()),
              attempts = attempts + 1
            WHERE id IN (SELECT id FROM predictions WHERE status = \(PredictionStatus.starting) AND claimed_by IS NULL AND NOT cancel_requested
                         ORDER BY created_at LIMIT \(bind: limit)\(lock))
            RETURNING \(unsafeRaw: PredictionStore.columns), claim_id, check_safety
            """
        // `UPDATE … RETURNING` keeps no order (PostgreSQL returns rows as it updated them), so
        // the oldest-first promise is kept here.
        return try await sql.raw(query).all(decoding: Claimed.self).sorted { ($0.record.createdAt, $0.record.id) < ($1.record.createdAt, $1.record.id) }
    }

    /// Extends the leases of the claims a replica holds.
    package func renew(_ claims: [String]) async throws {
        guard !claims.isEmpty else { return }
        try await sql.raw("""
            UPDATE predictions SET lease_until = \(bind: Self.leaseEnd()) WHERE claim_id IN \(SQLBind.group(claims))
            """).run()
    }

    /// Which of `claims` someone asked to cancel.
    package func cancelRequested(among claims: [String]) async throws -> [String] {
        guard !claims.isEmpty else { return [] }
        struct Row: Decodable { var id: String }
        return try await sql.raw("""
            SELECT id FROM predictions WHERE claim_id IN \(SQLBind.group(claims)) AND cancel_requested
            """).all(decoding: Row.self).map(\.id)
    }

    /// Cancels a prediction nobody has claimed; false when it is claimed or finished.
    package func cancelUnclaimed(_ id: String) async throws -> Bool {
        struct Row: Decodable { var id: String }
        return try await !sql.raw("""
            UPDATE predictions SET status = \(PredictionStatus.canceled), completed_at = \(bind: Timestamp.now()), cancel_requested = TRUE
            WHERE id = \(bind: id) AND status = \(PredictionStatus.starting) AND claimed_by IS NULL RETURNING id
            """).all(decoding: Row.self).isEmpty
    }

    /// Gives a waiting prediction back to the queue for another replica to claim (this one has
    /// nowhere to run it); false when the claim is no longer `claim`.
    package func release(_ id: String, claim: String) async throws -> Bool {
        struct Row: Decodable { var id: String }
        return try await !sql.raw("""
            UPDATE predictions SET claimed_by = NULL, claim_id = NULL, lease_until = NULL
            WHERE id = \(bind: id) AND claim_id = \(bind: claim) AND status = \(PredictionStatus.starting) RETURNING id
            """).all(decoding: Row.self).isEmpty
    }

    /// Asks whoever holds the claim to cancel (they see the flag, or the event).
    package func requestCancel(_ id: String) async throws {
        try await sql.raw("""
            UPDATE predictions SET cancel_requested = TRUE WHERE id = \(bind: id) AND status IN (\([PredictionStatus.starting, .processing]))
            """).run()
    }

    /// Handles claims whose lease ran out before `now`: requeued when nothing was produced and
    /// attempts remain, failed otherwise. Returns the ids of each.
    package func expireLeases(now: Date = Date()) async throws -> (requeued: [String], failed: [String]) {
        struct Row: Decodable { var id: String }
        let cutoff = Timestamp.string(now)
        let failed = try await sql.raw("""
            UPDATE predictions SET status = \(PredictionStatus.failed), completed_at = \(bind: cutoff), claimed_by = NULL, claim_id = NULL, lease_until = NULL,
              error = 'The server running this prediction was lost (it stopped renewing its claim) after it had started producing output or after \(unsafeRaw: String(Self.maxAttempts)) attempts'
            WHERE status IN (\([PredictionStatus.starting, .processing])) AND claimed_by IS NOT NULL AND lease_until < \(bind: cutoff)
              AND (output IS NOT NULL OR attempts >= \(bind: Self.maxAttempts) OR cancel_requested)
            RETURNING id
            """).all(decoding: Row.self).map(\.id)
        let requeued = try await sql.raw("""
            UPDATE predictions SET status = \(PredictionStatus.starting), claimed_by = NULL, claim_id = NULL, lease_until = NULL, started_at = NULL,
              logs = logs || 'The server running this prediction was lost; it was queued again.' || \(bind: "\n")
            WHERE status IN (\([PredictionStatus.starting, .processing])) AND claimed_by IS NOT NULL AND lease_until < \(bind: cutoff)
            RETURNING id
            """).all(decoding: Row.self).map(\.id)
        return (requeued, failed)
    }

    /// After a restart: what the previous process of `replica` (every replica's, with nil: the
    /// only server, on SQLite) was running fails (it may have had effects), what it had not
    /// started is queued again for anyone to claim. Claims of other live replicas are untouched.
    package func recoverAfterRestart(replica: String?) async throws -> (requeued: [String], failed: [String]) {
        struct Row: Decodable { var id: String }
        let mine: SQLQueryString = replica.map { " AND claimed_by = \(bind: $0)" } ?? ""
        let failed = try await sql.raw("""
            UPDATE predictions SET status = \(PredictionStatus.failed), completed_at = \(bind: Timestamp.now()), claimed_by = NULL, claim_id = NULL,
              error = 'The server restarted while this prediction was running'
            WHERE status = \(PredictionStatus.processing)\(mine) RETURNING id
            """).all(decoding: Row.self).map(\.id)
        let requeued = try await sql.raw("""
            UPDATE predictions SET claimed_by = NULL, claim_id = NULL, lease_until = NULL
            WHERE status = \(PredictionStatus.starting) AND claimed_by IS NOT NULL\(mine) RETURNING id
            """).all(decoding: Row.self).map(\.id)
        return (requeued, failed)
    }
}
