import Foundation
import Logging
import SQLKit
import SQLiteKit

/// The registry's tables, written against sql-kit so PostgreSQL can stand in for SQLite.
///
/// Statements are single and idempotent where possible (`ON CONFLICT`), so no multi-statement
/// transaction is needed; a version becomes visible only when its row is inserted, last.
public final class RegistryDatabase: Sendable {
    public let sql: any SQLDatabase
    private let connection: SQLiteConnection
    /// In-memory copies of hot rows, dropped by the stores' own writes.
    let caches = RegistryCaches()

    /// Opens (creating) the SQLite database at `path` and brings its schema up to date.
    public static func open(path: String, logger: Logger) async throws -> RegistryDatabase {
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        let database = RegistryDatabase(connection: connection)
        try await database.migrate()
        return database
    }

    private init(connection: SQLiteConnection) {
        self.connection = connection
        self.sql = connection.sql()
    }

    public func close() async throws {
        try await connection.close()
    }

    static let schema = [
        "PRAGMA journal_mode=WAL",
        "PRAGMA busy_timeout=5000",
        // With WAL, NORMAL keeps the database consistent across crashes and skips an fsync per
        // commit (a power loss may drop the last commits, never corrupt).
        "PRAGMA synchronous=NORMAL",
        """
        CREATE TABLE IF NOT EXISTS accounts (
          id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, name TEXT,
          password_hash TEXT, is_admin BOOLEAN NOT NULL DEFAULT FALSE, created_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS memberships (
          organization_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,
          PRIMARY KEY (organization_id, user_id))
        """,
        """
        CREATE TABLE IF NOT EXISTS tokens (
          id TEXT PRIMARY KEY, user_id TEXT NOT NULL, label TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
          created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT)
        """,
        """
        CREATE TABLE IF NOT EXISTS models (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, visibility TEXT NOT NULL,
          description TEXT, license TEXT, readme TEXT, created_at TEXT NOT NULL, UNIQUE (owner_id, name))
        """,
        """
        CREATE TABLE IF NOT EXISTS versions (
          model_id TEXT NOT NULL, id TEXT NOT NULL, manifest_digest TEXT NOT NULL, openapi_schema TEXT NOT NULL,
          created_at TEXT NOT NULL, PRIMARY KEY (model_id, id))
        """,
        """
        CREATE TABLE IF NOT EXISTS manifests (
          repository TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size BIGINT NOT NULL,
          created_at TEXT NOT NULL, PRIMARY KEY (repository, digest))
        """,
        """
        CREATE TABLE IF NOT EXISTS tags (
          repository TEXT NOT NULL, tag TEXT NOT NULL, manifest_digest TEXT NOT NULL, updated_at TEXT NOT NULL,
          PRIMARY KEY (repository, tag))
        """,
        "CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, size BIGINT NOT NULL, created_at TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS repository_blobs (
          repository TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (repository, digest))
        """,
        """
        CREATE TABLE IF NOT EXISTS predictions (
          id TEXT PRIMARY KEY, model_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, creator_id TEXT NOT NULL,
          source TEXT NOT NULL, status TEXT NOT NULL, input TEXT, output TEXT, error TEXT, logs TEXT NOT NULL DEFAULT '',
          metrics TEXT, created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT,
          data_removed BOOLEAN NOT NULL DEFAULT FALSE, shared BOOLEAN NOT NULL DEFAULT FALSE,
          webhook TEXT, webhook_events_filter TEXT)
        """,
        "CREATE INDEX IF NOT EXISTS predictions_creator ON predictions (creator_id, created_at)",
        """
        CREATE TABLE IF NOT EXISTS files (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, size BIGINT NOT NULL,
          sha256 TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS examples (
          model_id TEXT NOT NULL, prediction_id TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (model_id, prediction_id))
        """,
        """
        CREATE TABLE IF NOT EXISTS deployments (
          id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, name TEXT NOT NULL, model_id TEXT NOT NULL, version TEXT NOT NULL,
          hardware TEXT NOT NULL, min_instances INTEGER NOT NULL, max_instances INTEGER NOT NULL, release INTEGER NOT NULL,
          created_by TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (owner_id, name))
        """,
        "CREATE TABLE IF NOT EXISTS webhook_secrets (account_id TEXT PRIMARY KEY, secret TEXT NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS sessions (
          id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, acting_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL)
        """,
        """
        CREATE TABLE IF NOT EXISTS uploads (
          id TEXT PRIMARY KEY, repository TEXT NOT NULL, user_id TEXT NOT NULL, created_at TEXT NOT NULL)
        """,
    ]

    /// Columns added after a table was first created; "duplicate column" on a current database is expected.
    static let additions = [
        // The account a prediction runs for: the creator, or an organization the creator acted as.
        "ALTER TABLE predictions ADD COLUMN account_id TEXT",
    ]

    private func migrate() async throws {
        for statement in Self.schema {
            try await sql.raw(SQLQueryString(statement)).run()
        }
        for statement in Self.additions {
            try? await sql.raw(SQLQueryString(statement)).run()
        }
    }
}

/// Timestamps are stored as ISO-8601 text with milliseconds, which sort as they read.
enum Timestamp {
    /// A format style, not an `ISO8601DateFormatter`: creating one of those costs ~120 µs on
    /// Linux, and a prediction needs several timestamps (measured: 0.4 µs with the style).
    static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    static func now() -> String { string(Date()) }

    static func string(_ date: Date) -> String { style.format(date) }

    static func date(_ text: String) -> Date? { try? style.parse(text) }
}
