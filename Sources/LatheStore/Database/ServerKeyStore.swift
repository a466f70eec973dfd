import Foundation
import SQLKit

/// Keys the server signs with, made once and shared by every replica (the first replica to
/// write one wins; the others read it).
package struct ServerKeyStore: Sendable {
    let sql: any SQLDatabase

    package init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// The 32-byte key named `name`, created from random bytes the first time it is asked for.
    package func key(_ name: String) async throws -> Data {
        struct Row: Decodable { var secret: String }
        if let row = try await sql.raw("SELECT secret FROM server_keys WHERE name = \(bind: name)").first(decoding: Row.self),
           let key = Data(base64Encoded: row.secret) {
            return key
        }
        var generator = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try await sql.raw("""
            INSERT INTO server_keys (name, secret) VALUES (\(bind: name), \(bind: key.base64EncodedString())) ON CONFLICT (name) DO NOTHING
            """).run()
        return try await self.key(name)
    }
}
