import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import VaporCSQLite

/// The embedded database: one SQLite connection whose statements run on the thread that asks,
/// one at a time, with prepared statements kept for reuse.
///
/// Why not SQLiteNIO's connection: it runs every statement on a thread pool and hands the result
/// back to the caller's thread, two thread wake-ups per statement. A statement on this database
/// takes tens of microseconds (an index lookup, a row written to the WAL without an fsync), the
/// hand-offs cost more than that, and a `Prefer: wait` prediction writes its row on the way to its
/// answer. The price is that a long statement holds up its caller's thread, and any other that
/// wants the database meanwhile: the stores keep statements short (retention and deletion go a
/// prediction at a time, lists are paged), and the background services run on Swift's pool.
final class InlineSQLite: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: OpaquePointer?
    /// Prepared statements by their SQL. Queries with a varying number of binds (`IN (…)` lists)
    /// make new texts, so the cache is emptied when it grows past `cacheLimit`.
    private var statements: [String: OpaquePointer] = [:]
    private let cacheLimit = 256
    let path: String

    init(path: String) throws {
        self.path = path
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let opened = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
        guard opened == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite_nio_sqlite3_close(handle) }
            throw StoreError(.unavailable, "cannot open the database \(path): \(message)")
        }
        self.handle = handle
    }

    deinit {
        close()
    }

    func close() {
        lock.withLock {
            for statement in statements.values { sqlite_nio_sqlite3_finalize(statement) }
            statements.removeAll()
            if let handle { sqlite_nio_sqlite3_close_v2(handle) }
            handle = nil
        }
    }

    /// Runs one statement with `binds`, handing each row's columns to `onRow`.
    func run(_ sql: String, _ binds: [SQLiteData], onRow: (_ columns: [String], _ values: [SQLiteData]) throws -> Void) throws {
        try lock.withLock {
            guard let handle else { throw StoreError(.unavailable, "the database \(path) is closed") }
            let statement = try prepared(sql, on: handle)
            defer {
                sqlite_nio_sqlite3_reset(statement)
                sqlite_nio_sqlite3_clear_bindings(statement)
            }
            for (index, value) in binds.enumerated() {
                try check(bind(value, at: Int32(index + 1), in: statement), sql, on: handle)
            }
            var columns: [String]?
            while true {
                let step = sqlite_nio_sqlite3_step(statement)
                if step == SQLITE_DONE { return }
                guard step == SQLITE_ROW else { try check(step, sql, on: handle); return }
                let names = columns ?? (0..<sqlite_nio_sqlite3_column_count(statement)).map {
                    String(cString: sqlite_nio_sqlite3_column_name(statement, $0))
                }
                columns = names
                try onRow(names, (0..<Int32(names.count)).map { value(at: $0, in: statement) })
            }
        }
    }

    private func prepared(_ sql: String, on handle: OpaquePointer) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        if statements.count >= cacheLimit {
            for statement in statements.values { sqlite_nio_sqlite3_finalize(statement) }
            statements.removeAll()
        }
        var statement: OpaquePointer?
        try check(sqlite_nio_sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil), sql, on: handle)
        guard let statement else { throw StoreError(.invalid, "the statement is empty: \(sql.prefix(80))") }
        statements[sql] = statement
        return statement
    }

    private func bind(_ value: SQLiteData, at index: Int32, in statement: OpaquePointer) -> Int32 {
        switch value {
        case .integer(let integer): sqlite_nio_sqlite3_bind_int64(statement, index, Int64(integer))
        case .float(let double): sqlite_nio_sqlite3_bind_double(statement, index, double)
        case .text(let text): sqlite_nio_sqlite3_bind_text64(statement, index, text, UInt64(text.utf8.count), transient, UInt8(SQLITE_UTF8))
        case .blob(let bytes):
            bytes.withUnsafeReadableBytes { sqlite_nio_sqlite3_bind_blob64(statement, index, $0.baseAddress, UInt64($0.count), transient) }
        case .null: sqlite_nio_sqlite3_bind_null(statement, index)
        }
    }

    private func value(at column: Int32, in statement: OpaquePointer) -> SQLiteData {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER: return .integer(Int(sqlite_nio_sqlite3_column_int64(statement, column)))
        case SQLITE_FLOAT: return .float(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            if let bytes = sqlite_nio_sqlite3_column_blob(statement, column) { buffer.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count)) }
            return .blob(buffer)
        default: return .null
        }
    }

    private func check(_ code: Int32, _ sql: String, on handle: OpaquePointer) throws {
        guard code != SQLITE_OK && code != SQLITE_ROW && code != SQLITE_DONE else { return }
        throw SQLiteFailure(code: code, message: String(cString: sqlite_nio_sqlite3_errmsg(handle)), statement: String(sql.prefix(200)))
    }

    /// SQLite copies what is bound (the Swift value's storage does not outlive the call).
    private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}

/// A statement SQLite refused, with its message and the statement's start.
struct SQLiteFailure: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var statement: String
    var description: String { "SQLite error \(code): \(message) (in \(statement))" }
}

/// sql-kit over ``InlineSQLite``: every store's queries, with SQLite's dialect and value coding.
struct InlineSQLDatabase: SQLDatabase {
    let connection: InlineSQLite
    let logger: Logger
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    var dialect: any SQLDialect { SQLiteDialect() }
    var queryLogLevel: Logger.Level? { nil }
    private let encoder = SQLiteDataEncoder()
    private let decoder = SQLiteDataDecoder()

    init(connection: InlineSQLite, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) -> EventLoopFuture<Void> {
        do {
            try run(query, onRow)
            return eventLoop.makeSucceededVoidFuture()
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        try run(query, onRow)
    }

    private func run(_ query: any SQLExpression, _ onRow: (any SQLRow) -> ()) throws {
        let (sql, binds) = serialize(query)
        let values = try binds.map { try encoder.encode($0) }
        try connection.run(sql, values) { columns, row in
            onRow(InlineRow(columns: columns, values: row, decoder: decoder))
        }
    }
}

/// One row of ``InlineSQLDatabase``'s results.
struct InlineRow: SQLRow {
    let columns: [String]
    let values: [SQLiteData]
    let decoder: SQLiteDataDecoder

    var allColumns: [String] { columns }

    func contains(column: String) -> Bool { columns.contains(column) }

    func decodeNil(column: String) throws -> Bool { (value(column) ?? .null) == .null }

    func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
        guard let value = value(column) else {
            throw DecodingError.valueNotFound(D.self, .init(codingPath: [], debugDescription: "no column named \(column) in the row"))
        }
        return try decoder.decode(D.self, from: value)
    }

    private func value(_ column: String) -> SQLiteData? {
        columns.firstIndex(of: column).map { values[$0] }
    }
}
