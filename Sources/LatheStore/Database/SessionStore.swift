import Foundation
import LatheArchive
import SQLKit

/// A signed-in browser: the user, and the account (the user or one of their organizations) the
/// pages act as.
public struct WebSession: Sendable {
    public var principal: Principal
    public var acting: Account
    package var idHash: String
}

/// Browser sessions. The cookie holds a random secret; only its SHA-256 is stored, as for tokens.
public struct SessionStore: Sendable {
    let sql: any SQLDatabase
    package let accounts: AccountStore
    /// Sessions last 30 days.
    package static let lifetime: TimeInterval = 30 * 24 * 3600

    public init(database: RegistryDatabase) {
        sql = database.sql
        accounts = AccountStore(database: database)
    }

    /// Starts a session for `user`; returns the cookie secret.
    public func create(for user: Account) async throws -> String {
        let secret = Self.randomSecret()
        let now = Date()
        try await sql.raw("""
            INSERT INTO sessions (id_hash, user_id, acting_id, created_at, expires_at)
            VALUES (\(bind: AccountStore.hash(secret)), \(bind: user.id), \(bind: user.id), \(bind: Timestamp.string(now)),
                    \(bind: Timestamp.string(now.addingTimeInterval(Self.lifetime))))
            """).run()
        return secret
    }

    /// The live session a cookie secret stands for.
    public func session(secret: String) async throws -> WebSession? {
        struct Row: Decodable { var user_id: String; var acting_id: String }
        let idHash = AccountStore.hash(secret)
        guard let row = try await sql.raw("""
            SELECT s.user_id, s.acting_id FROM sessions s JOIN accounts a ON a.id = s.user_id
            WHERE s.id_hash = \(bind: idHash) AND s.expires_at > \(bind: Timestamp.now()) AND a.disabled_at IS NULL
            """).first(decoding: Row.self), let user = try await accounts.account(id: row.user_id) else { return nil }
        let principal = try await accounts.principal(for: user)
        // Acting as an organization lasts only while the user is still a member.
        var acting = user
        if row.acting_id != user.id, principal.actsFor(row.acting_id), let organization = try await accounts.account(id: row.acting_id) {
            acting = organization
        }
        return WebSession(principal: principal, acting: acting, idHash: idHash)
    }

    public func act(as account: Account, in session: WebSession) async throws {
        try await sql.raw("UPDATE sessions SET acting_id = \(bind: account.id) WHERE id_hash = \(bind: session.idHash)").run()
    }

    public func end(_ session: WebSession) async throws {
        try await sql.raw("DELETE FROM sessions WHERE id_hash = \(bind: session.idHash)").run()
    }

    /// 32 random bytes from the system's CSPRNG, hex-encoded (cookie-safe).
    package static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return ByteEncoding.hex((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}
