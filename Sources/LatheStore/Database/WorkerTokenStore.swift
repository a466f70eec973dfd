import Crypto
import Foundation
import SQLKit

/// A worker token as listed (the secret is printed once, at creation, and stored hashed).
public struct WorkerTokenRecord: Sendable, Codable, Hashable {
    public var id: String
    public var name: String
    public var createdAt: String
    public var revokedAt: String?

    package enum CodingKeys: String, CodingKey {
        case id, name
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }
}

/// Tokens that let a `lathe worker` speak the worker protocol (and pull the versions it was
/// assigned). They open no `/v1` or web route: they live apart from users' API tokens and
/// carry their own prefix, so the two can never be mistaken for each other.
public struct WorkerTokenStore: Sendable {
    let sql: any SQLDatabase
    /// Every worker token starts with this.
    public static let prefix = "lwk_"

    public init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// Creates a token named `name`; the secret is returned once and only its SHA-256 is kept.
    public func create(name: String) async throws -> (secret: String, record: WorkerTokenRecord) {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        var generator = SystemRandomNumberGenerator()
        let secret = Self.prefix + String((0..<40).map { _ in alphabet.randomElement(using: &generator)! })
        let record = WorkerTokenRecord(id: "wt-" + UUID().uuidString.lowercased().prefix(12), name: name, createdAt: Timestamp.now())
        try await sql.raw("""
            INSERT INTO worker_tokens (id, name, token_hash, created_at)
            VALUES (\(bind: record.id), \(bind: name), \(bind: AccountStore.hash(secret)), \(bind: record.createdAt))
            """).run()
        return (secret, record)
    }

    public func list() async throws -> [WorkerTokenRecord] {
        try await sql.raw("SELECT id, name, created_at, revoked_at FROM worker_tokens ORDER BY created_at").all(decoding: WorkerTokenRecord.self)
    }

    /// Revokes a token by id; false when there is no such live token.
    public func revoke(_ id: String) async throws -> Bool {
        guard try await list().contains(where: { $0.id == id && $0.revokedAt == nil }) else { return false }
        try await sql.raw("UPDATE worker_tokens SET revoked_at = \(bind: Timestamp.now()) WHERE id = \(bind: id)").run()
        return true
    }

    /// The live token a secret stands for, looked up by its hash.
    public func authenticate(_ secret: String) async throws -> WorkerTokenRecord? {
        guard secret.hasPrefix(Self.prefix) else { return nil }
        return try await sql.raw("""
            SELECT id, name, created_at, revoked_at FROM worker_tokens WHERE token_hash = \(bind: AccountStore.hash(secret)) AND revoked_at IS NULL
            """).first(decoding: WorkerTokenRecord.self)
    }
}
