import Foundation
import SQLKit

/// Each account's webhook signing secret (`whsec_…`), created on first use.
package struct WebhookSecretStore: Sendable {
    let sql: any SQLDatabase

    package init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// The account's secret, made from 32 random bytes the first time it is asked for (a race
    /// between replicas keeps whichever row was written first).
    package func secret(for accountID: String) async throws -> String {
        struct Row: Decodable { var secret: String }
        if let row = try await sql.raw("SELECT secret FROM webhook_secrets WHERE account_id = \(bind: accountID)").first(decoding: Row.self) {
            return row.secret
        }
        var generator = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try await sql.raw("""
            INSERT INTO webhook_secrets (account_id, secret) VALUES (\(bind: accountID), \(bind: "whsec_" + key.base64EncodedString()))
            ON CONFLICT (account_id) DO NOTHING
            """).run()
        return try await secret(for: accountID)
    }
}
