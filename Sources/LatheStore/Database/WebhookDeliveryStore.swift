import Foundation
import SQLKit

/// One webhook message to send: the event's body as it was when the event happened, sent and
/// retried under the same `webhook-id` (Standard Webhooks) until the receiver takes it.
public struct WebhookDelivery: Sendable, Codable, Hashable {
    /// Where a delivery stands.
    public enum Status: String, Sendable, Codable {
        /// Waiting for its next attempt (`next_at`).
        case pending
        /// The receiver answered 2xx.
        case delivered
        /// Retried for the whole retry window without a 2xx; kept for the operator's eyes.
        case abandoned
    }

    /// The `webhook-id`, the same on every attempt.
    public var id: String
    public var predictionID: String
    public var event: String
    public var url: String
    /// The account whose secret signs it.
    public var accountID: String
    public var body: String
    public var status: Status
    /// Attempts made so far.
    public var attempts: Int
    public var nextAt: String
    public var createdAt: String
    public var lastError: String?

    package enum CodingKeys: String, CodingKey {
        case id, event, url, body, status, attempts
        case predictionID = "prediction_id"
        case accountID = "account_id"
        case nextAt = "next_at"
        case createdAt = "created_at"
        case lastError = "last_error"
    }

    /// Every stored property, as the memberwise initializer would take them.
    package init(id: String, predictionID: String, event: String, url: String, accountID: String, body: String, status: Status,
                 attempts: Int, nextAt: String, createdAt: String, lastError: String? = nil) {
        self.id = id
        self.predictionID = predictionID
        self.event = event
        self.url = url
        self.accountID = accountID
        self.body = body
        self.status = status
        self.attempts = attempts
        self.nextAt = nextAt
        self.createdAt = createdAt
        self.lastError = lastError
    }
}

/// Webhook deliveries as rows (DESIGN §5): written when the event happens, claimed by whichever
/// replica's delivery service comes first (a lease, as predictions are claimed), so a delivery
/// outlives the replica that made it and is never sent by two at once. One SQL for SQLite and
/// PostgreSQL (PostgreSQL claims `FOR UPDATE SKIP LOCKED`).
public struct WebhookDeliveryStore: Sendable {
    /// How long a claim holds: a replica that dies mid-send frees its deliveries after this.
    public static let lease: TimeInterval = 30

    let sql: any SQLDatabase
    package let kind: RegistryDatabase.Kind

    public init(database: RegistryDatabase) {
        sql = database.sql
        kind = database.kind
    }

    package static let columns = "id, prediction_id, event, url, account_id, body, status, attempts, next_at, created_at, last_error"

    /// Records a delivery to make now; a second one with the same id (the same event of the
    /// same prediction, recorded again after a restart) is ignored.
    public func enqueue(_ delivery: WebhookDelivery) async throws {
        try await sql.raw("""
            INSERT INTO webhook_deliveries (id, prediction_id, event, url, account_id, body, status, attempts, next_at, created_at)
            VALUES (\(bind: delivery.id), \(bind: delivery.predictionID), \(bind: delivery.event), \(bind: delivery.url),
                    \(bind: delivery.accountID), \(bind: delivery.body), \(bind: WebhookDelivery.Status.pending.rawValue),
                    \(bind: delivery.attempts), \(bind: delivery.nextAt), \(bind: delivery.createdAt))
            ON CONFLICT (id) DO NOTHING
            """).run()
    }

    /// Claims up to `limit` deliveries that are due and unclaimed (or whose claim lapsed), for
    /// `replica`; with `id`, only that one.
    public func claim(replica: String, limit: Int, id: String? = nil, now: Date = Date()) async throws -> [WebhookDelivery] {
        let lock: SQLQueryString = kind == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        let only: SQLQueryString = id.map { " AND id = \(bind: $0)" } ?? ""
        let at = Timestamp.string(now)
        // A read first: the services poll every second, and most seconds nothing is due, so
        // they need not queue for SQLite's one writer.
        struct Row: Decodable { var id: String }
        let due = try await sql.raw("""
            SELECT id FROM webhook_deliveries
            WHERE status = 'pending' AND next_at <= \(bind: at) AND (claimed_until IS NULL OR claimed_until < \(bind: at))\(only) LIMIT 1
            """).all(decoding: Row.self)
        guard !due.isEmpty else { return [] }
        return try await sql.raw("""
            UPDATE webhook_deliveries SET claimed_by = \(bind: replica), claimed_until = \(bind: Timestamp.string(now.addingTimeInterval(Self.lease)))
            WHERE id IN (SELECT id FROM webhook_deliveries
                         WHERE status = 'pending' AND next_at <= \(bind: at) AND (claimed_until IS NULL OR claimed_until < \(bind: at))\(only)
                         ORDER BY next_at LIMIT \(bind: limit)\(lock))
            RETURNING \(unsafeRaw: Self.columns)
            """).all(decoding: WebhookDelivery.self)
    }

    /// The receiver took it.
    public func delivered(_ id: String, replica: String, at now: Date = Date()) async throws {
        try await sql.raw("""
            UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, finished_at = \(bind: Timestamp.string(now)),
              claimed_by = NULL, claimed_until = NULL, last_error = NULL
            WHERE id = \(bind: id) AND claimed_by = \(bind: replica)
            """).run()
    }

    /// An attempt failed: try again at `next`, or give up (`abandoned`) when `next` is nil.
    public func failed(_ id: String, replica: String, error: String, next: Date?, at now: Date = Date()) async throws {
        let status: WebhookDelivery.Status = next == nil ? .abandoned : .pending
        try await sql.raw("""
            UPDATE webhook_deliveries SET status = \(bind: status.rawValue), attempts = attempts + 1,
              next_at = \(bind: Timestamp.string(next ?? now)), finished_at = \(bind: next == nil ? Timestamp.string(now) : nil),
              claimed_by = NULL, claimed_until = NULL, last_error = \(bind: String(error.prefix(500)))
            WHERE id = \(bind: id) AND claimed_by = \(bind: replica)
            """).run()
    }

    /// Frees the claims `replica` held before it restarted (its sends died with it).
    public func releaseClaims(heldBy replica: String) async throws {
        try await sql.raw("""
            UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = \(bind: replica) AND status = 'pending'
            """).run()
    }

    /// A prediction's deliveries, oldest first.
    public func deliveries(of predictionID: String) async throws -> [WebhookDelivery] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM webhook_deliveries WHERE prediction_id = \(bind: predictionID) ORDER BY created_at, id
            """).all(decoding: WebhookDelivery.self)
    }

    /// Forgets deliveries that ended before `cutoff`.
    public func removeFinished(before cutoff: Date) async throws {
        try await sql.raw("""
            DELETE FROM webhook_deliveries WHERE status <> 'pending' AND finished_at < \(bind: Timestamp.string(cutoff))
            """).run()
    }
}
