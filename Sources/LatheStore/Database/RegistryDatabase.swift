import Foundation
import Logging
import NIOPosix
import PostgresKit
import SQLKit
import SQLiteKit

/// The registry's tables on SQLite (one machine, the default) or PostgreSQL (scaled out), with
/// one sql-kit implementation of every store over both (DESIGN §5). The schema is brought up to
/// date by versioned migrations recorded in `schema_migrations`, each applied once, in a
/// transaction, on either database.
public final class RegistryDatabase: Sendable {
    /// Which database is behind ``sql``.
    public enum Kind: String, Sendable { case sqlite, postgres }

    public let kind: Kind
    let sql: any SQLDatabase
    private let closer: @Sendable () async throws -> Void
    /// In-memory copies of hot rows, dropped by the stores' own writes.
    package let caches = RegistryCaches()
    /// SQLite is one connection that concurrent tasks share, so a `BEGIN` there would take in
    /// other tasks' statements: writes that must be seen together (a prediction's row and its
    /// event) and the reads of both pass this gate instead.
    let sqliteGate = SerialGate()

    /// Opens (creating) the SQLite database at `path` and brings its schema up to date.
    public static func open(path: String, logger: Logger) async throws -> RegistryDatabase {
        let connection = try InlineSQLite(path: path)
        let database = RegistryDatabase(kind: .sqlite, sql: InlineSQLDatabase(connection: connection, logger: logger)) { connection.close() }
        try await database.migrate()
        return database
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:password@host:port/database`) and
    /// brings its schema up to date. A server that cannot be reached is one sentence naming the
    /// host and port, never the password.
    /// `eventLoops`: where the connections live. The server passes its own loop, so that a
    /// query made on the way to an answer is sent and answered on the thread that asked.
    public static func open(postgres url: String, logger: Logger, connectionsPerLoop: Int = 4, migrate: Bool = true,
                            eventLoops: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> RegistryDatabase {
        let configuration: SQLPostgresConfiguration
        do {
            configuration = try SQLPostgresConfiguration(url: url)
        } catch {
            throw StoreError(.invalid, "the database URL is not postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let components = URLComponents(string: url)
        let place = "\(components?.host ?? "?"):\(components?.port ?? 5432)"
        let pool = EventLoopGroupConnectionPool(source: PostgresConnectionSource(sqlConfiguration: configuration),
                                                maxConnectionsPerEventLoop: connectionsPerLoop, requestTimeout: .seconds(10),
                                                logger: logger, on: eventLoops)
        // The pool is thread-safe (it hands connections out on their event loops); AsyncKit
        // predates Sendable annotations.
        let box = PoolBox(pool: pool)
        let database = RegistryDatabase(kind: .postgres, sql: pool.database(logger: logger).sql()) {
            try await box.pool.shutdownAsync()
        }
        do {
            _ = try await database.sql.raw("SELECT 1 AS one").all()
        } catch {
            try? await box.pool.shutdownAsync()
            throw StoreError(.unavailable, "cannot reach PostgreSQL at \(place) (\(Self.reason(error))); check that it runs and that the URL's host, port, user and database are right")
        }
        if migrate { try await database.migrate() }
        return database
    }

    /// The newest migration applied to this database (0 for an empty one) and the newest this
    /// build knows; `lathe doctor` reports both without changing anything.
    public func schemaVersions() async throws -> (applied: Int, known: Int) {
        struct Row: Decodable { var version: Int? }
        let known = Self.migrations.last?.version ?? 0
        guard let rows = try? await sql.raw("SELECT MAX(version) AS version FROM schema_migrations").all(decoding: Row.self) else {
            return (0, known)
        }
        return (rows.first?.version ?? 0, known)
    }

    /// The database named by `url` (PostgreSQL, its connections on `eventLoops` when given: 8 on
    /// each) or, without one, SQLite in the data folder.
    public static func open(url: String?, data: URL, logger: Logger, eventLoops: (any EventLoopGroup)? = nil) async throws -> RegistryDatabase {
        if let url, !url.isEmpty {
            guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                throw StoreError(.invalid, "--database takes a postgres:// URL (SQLite in --data is the default)")
            }
            return try await open(postgres: url, logger: logger, connectionsPerLoop: eventLoops == nil ? 4 : 8,
                                  eventLoops: eventLoops ?? MultiThreadedEventLoopGroup.singleton)
        }
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        return try await open(path: data.appendingPathComponent("registry.sqlite").path, logger: logger)
    }

    private init(kind: Kind, sql: any SQLDatabase, closer: @escaping @Sendable () async throws -> Void) {
        self.kind = kind
        self.sql = sql
        self.closer = closer
    }

    public func close() async throws {
        try await closer()
    }

    /// Whether `error` says the database is unreachable or restarting (a retryable condition),
    /// as opposed to a query it refused.
    package static func isUnavailable(_ error: any Error) -> Bool {
        if let error = error as? PSQLError {
            return [.connectionError, .serverClosedConnection, .unexpectedBackendMessage, .poolClosed].contains(error.code)
        }
        return String(describing: type(of: error)).contains("ConnectionPool")
    }

    /// A connection error in words (PostgresNIO's descriptions can be long and carry the query).
    package static func reason(_ error: any Error) -> String {
        if let psql = error as? PSQLError {
            if let message = psql.serverInfo?[.message] {
                return message + (psql.serverInfo?[.sqlState].map { " [SQLSTATE \($0)]" } ?? "")
            }
            let underlying = psql.underlying.map { String(describing: $0) } ?? ""
            if underlying.contains("refused") { return "connection refused" }
            if psql.code == .connectionError || psql.code == .serverClosedConnection { return "the connection failed: \(underlying.prefix(150))" }
            return "\(psql.code) \(underlying.prefix(150))"
        }
        return String(String(describing: error).prefix(300))
    }

    /// Runs `body` in one transaction on one connection: committed if it returns, rolled back
    /// if it throws.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await sql.withSession { session in
            try await session.raw("BEGIN").run()
            do {
                let result = try await body(session)
                try await session.raw("COMMIT").run()
                return result
            } catch {
                try? await session.raw("ROLLBACK").run()
                throw error
            }
        }
    }
}

extension SQLDatabase {
    /// The aggregate that joins a text column's values with commas: the one place the two
    /// dialects differ in this schema's queries.
    func commaJoined(_ column: String) -> String {
        dialect.name == "postgresql" ? "STRING_AGG(\(column), ',')" : "GROUP_CONCAT(\(column))"
    }
}

private struct PoolBox: @unchecked Sendable {
    package let pool: EventLoopGroupConnectionPool<PostgresConnectionSource>
}

/// Timestamps are stored as ISO-8601 text with milliseconds, which sort as they read.
package enum Timestamp {
    /// A format style, not an `ISO8601DateFormatter`: creating one of those costs ~120 µs on
    /// Linux, and a prediction needs several timestamps (measured: 0.4 µs with the style).
    package static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    package static func now() -> String { string(Date()) }

    package static func string(_ date: Date) -> String { style.format(date) }

    package static func date(_ text: String) -> Date? { try? style.parse(text) }
}

/// Runs one body at a time, in the order they arrive (an async mutex).
actor SerialGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    package func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
        defer {
            // Handed straight to the next in line, so `busy` stays true.
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
        return try await body()
    }
}
