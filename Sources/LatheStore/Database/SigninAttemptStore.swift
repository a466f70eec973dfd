import Foundation
import SQLKit

/// Web sign-in attempts and failures per client address and username, shared by every replica,
/// so a password guesser gets the same 10 attempts a minute and the same growing delay
/// whichever replica the load balancer picks. Each attempt is a row: the window is exact.
public struct SigninAttemptStore: Sendable {
    let sql: any SQLDatabase

    public init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// Records an attempt for `key` unless `limit` attempts were made in the minute before:
    /// returns whether it was allowed, when the oldest attempt of that minute leaves it, and the
    /// failures in the last 15 minutes. A refused attempt is not kept (hammering adds no rows),
    /// but is counted first, so two replicas racing at the limit cannot both get through.
    package func attempt(_ key: String, limit: Int, now: Date = Date()) async throws -> (allowed: Bool, oldest: Date?, failures: Int) {
        let stamp = Timestamp.string(now)
        try await sql.raw("INSERT INTO signin_attempts (key, kind, at) VALUES (\(bind: key), 'attempt', \(bind: stamp))").run()
        struct Row: Decodable { var attempts: Int; var oldest: String?; var failures: Int }
        let minute = Timestamp.string(now.addingTimeInterval(-60)), quarter = Timestamp.string(now.addingTimeInterval(-900))
        let row = try await sql.raw("""
            SELECT COUNT(*) FILTER (WHERE kind = 'attempt' AND at > \(bind: minute)) AS attempts,
                   MIN(CASE WHEN kind = 'attempt' AND at > \(bind: minute) THEN at END) AS oldest,
                   COUNT(*) FILTER (WHERE kind = 'failure' AND at > \(bind: quarter)) AS failures
            FROM signin_attempts WHERE key = \(bind: key) AND at > \(bind: quarter)
            """).first(decoding: Row.self)
        let allowed = (row?.attempts ?? 1) <= limit
        if !allowed {
            try await sql.raw("DELETE FROM signin_attempts WHERE key = \(bind: key) AND kind = 'attempt' AND at = \(bind: stamp)").run()
        }
        return (allowed, row?.oldest.flatMap(Timestamp.date), row?.failures ?? 0)
    }

    /// The attempt for `key` failed (a wrong password): it adds to the growing delay.
    package func failed(_ key: String, now: Date = Date()) async throws {
        try await sql.raw("INSERT INTO signin_attempts (key, kind, at) VALUES (\(bind: key), 'failure', \(bind: Timestamp.string(now)))").run()
    }

    /// A successful sign-in forgets the failures (attempts still count toward the minute).
    package func succeeded(_ key: String) async throws {
        try await sql.raw("DELETE FROM signin_attempts WHERE key = \(bind: key) AND kind = 'failure'").run()
    }

    /// Forgets rows older than any window looks back.
    package func removeOld(before cutoff: String) async throws {
        try await sql.raw("DELETE FROM signin_attempts WHERE at < \(bind: cutoff)").run()
    }
}
