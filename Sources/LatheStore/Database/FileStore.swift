import Foundation
import SQLKit

/// A file uploaded through `/v1/files`.
package struct FileRecord: Sendable, Codable {
    package var id: String
    package var ownerID: String
    package var name: String
    package var contentType: String
    package var size: Int64
    package var sha256: String
    package var metadata: String
    package var createdAt: String
    package var expiresAt: String

    package enum CodingKeys: String, CodingKey {
        case id, name, size, sha256, metadata
        case ownerID = "owner_id", contentType = "content_type", createdAt = "created_at", expiresAt = "expires_at"
    }
}

extension FileRecord {
    /// A new file, created `now`, expiring a day later.
    package init(id: String, ownerID: String, name: String, contentType: String, size: Int64, sha256: String, metadata: String,
                 now: Date) {
        self.init(id: id, ownerID: ownerID, name: name, contentType: contentType, size: size, sha256: sha256, metadata: metadata,
                  createdAt: Timestamp.string(now), expiresAt: Timestamp.string(now.addingTimeInterval(24 * 3600)))
    }
}

/// Uploaded files' rows (their bytes are the blob store's).
package struct FileStore: Sendable {
    let sql: any SQLDatabase
    package static let columns = "id, owner_id, name, content_type, size, sha256, metadata, created_at, expires_at"

    package init(database: RegistryDatabase) {
        sql = database.sql
    }

    package func insert(_ file: FileRecord) async throws {
        try await sql.raw("""
            INSERT INTO files (id, owner_id, name, content_type, size, sha256, metadata, created_at, expires_at)
            VALUES (\(bind: file.id), \(bind: file.ownerID), \(bind: file.name), \(bind: file.contentType), \(bind: file.size),
                    \(bind: file.sha256), \(bind: file.metadata), \(bind: file.createdAt), \(bind: file.expiresAt))
            """).run()
    }

    /// `owner`'s file `id`; nil for anyone else's.
    package func file(_ id: String, owner: String) async throws -> FileRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.columns) FROM files WHERE id = \(bind: id) AND owner_id = \(bind: owner)")
            .first(decoding: FileRecord.self)
    }

    /// `owner`'s newest files.
    package func list(owner: String, limit: Int = 100) async throws -> [FileRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM files WHERE owner_id = \(bind: owner) ORDER BY created_at DESC LIMIT \(bind: limit)
            """).all(decoding: FileRecord.self)
    }

    /// Ids of files past their expiry.
    package func expired(before cutoff: String) async throws -> [String] {
        struct Row: Decodable { var id: String }
        return try await sql.raw("SELECT id FROM files WHERE expires_at < \(bind: cutoff)").all(decoding: Row.self).map(\.id)
    }

    /// Deletes the row (only `owner`'s when given).
    package func delete(_ id: String, owner: String? = nil) async throws {
        if let owner {
            try await sql.raw("DELETE FROM files WHERE id = \(bind: id) AND owner_id = \(bind: owner)").run()
        } else {
            try await sql.raw("DELETE FROM files WHERE id = \(bind: id)").run()
        }
    }

    /// Bytes `owner`'s files take.
    /// Every file's id (what garbage collection keeps under `files/`).
    package func allIDs() async throws -> Set<String> {
        struct Row: Decodable { var id: String }
        return Set(try await sql.raw("SELECT id FROM files").all(decoding: Row.self).map(\.id))
    }

    package func used(by owner: String) async throws -> Int64 {
        struct Row: Decodable { var total: Int64? }
        return try await sql.raw("SELECT CAST(SUM(size) AS BIGINT) AS total FROM files WHERE owner_id = \(bind: owner)").first(decoding: Row.self)?.total ?? 0
    }
}
