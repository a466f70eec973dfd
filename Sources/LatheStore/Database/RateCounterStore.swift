import Foundation
import SQLKit

/// Request counts per key and minute, shared by every replica (so a per-account limit holds
/// whichever replica answers). Replicas add their counts in batches.
public struct RateCounterStore: Sendable {
    let sql: any SQLDatabase

    public init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// Adds `amount` to `key`'s count in the minute starting at `window` and returns the new total.
    package func add(_ amount: Int, to key: String, window: String) async throws -> Int {
        struct Row: Decodable { var count: Int }
        return try await sql.raw("""
            INSERT INTO rate_counters (key, window_start, count) VALUES (\(bind: key), \(bind: window), \(bind: amount))
            ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + \(bind: amount)
            RETURNING count
            """).first(decoding: Row.self)?.count ?? amount
    }

    /// Forgets windows that ended before `cutoff`.
    package func removeOld(before cutoff: String) async throws {
        try await sql.raw("DELETE FROM rate_counters WHERE window_start < \(bind: cutoff)").run()
    }
}
