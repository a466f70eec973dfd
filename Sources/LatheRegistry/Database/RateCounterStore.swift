import Foundation
import SQLKit

/// Request counts per key and minute, shared by every replica (so a per-account limit holds
/// whichever replica answers). One upsert per counted request.
public struct RateCounterStore: Sendable {
    let sql: any SQLDatabase

    public init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// Adds one to `key`'s count in the minute starting at `window` and returns the new count.
    func increment(_ key: String, window: String) async throws -> Int {
        struct Row: Decodable { var count: Int }
        return try await sql.raw("""
            INSERT INTO rate_counters (key, window_start, count) VALUES (\(bind: key), \(bind: window), 1)
            ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1
            RETURNING count
            """).first(decoding: Row.self)?.count ?? 1
    }

    /// Forgets windows that ended before `cutoff`.
    func removeOld(before cutoff: String) async throws {
        try await sql.raw("DELETE FROM rate_counters WHERE window_start < \(bind: cutoff)").run()
    }
}
