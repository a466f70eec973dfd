import Foundation
import LatheRunner
import SQLKit

/// A model as stored, with its owner's name joined in.
public struct ModelRecord: Sendable, Codable, Hashable {
    public var id: String
    public var ownerID: String
    public var owner: String
    public var name: String
    public var visibility: String
    public var description: String?
    public var license: String?
    public var readme: String?
    /// The hardware SKU its predictions run on (`cpu`, a label a worker offers, `gpu-…`).
    public var hardware: String = "cpu"
    public var createdAt: String

    public var repository: String { "\(owner)/\(name)" }
    public var isPublic: Bool { visibility == "public" }

    package enum CodingKeys: String, CodingKey {
        case id, owner, name, visibility, description, license, readme, hardware
        case ownerID = "owner_id"
        case createdAt = "created_at"
    }
}

/// A version: the digest of a pushed Lathe config, with the manifest that carries it.
public struct VersionRecord: Sendable, Codable, Hashable {
    public var id: String
    public var manifestDigest: String
    public var openapiSchema: String
    public var createdAt: String

    public init(id: String, manifestDigest: String, openapiSchema: String, createdAt: String) {
        self.id = id
        self.manifestDigest = manifestDigest
        self.openapiSchema = openapiSchema
        self.createdAt = createdAt
    }

    package enum CodingKeys: String, CodingKey {
        case id
        case manifestDigest = "manifest_digest"
        case openapiSchema = "openapi_schema"
        case createdAt = "created_at"
    }
}

/// Models, versions, tags, manifests and which blobs each repository may read.
///
/// Every lookup on behalf of a caller filters by visibility in the query itself: a private model
/// simply has no row for someone who may not see it.
public struct ModelStore: Sendable {
    let sql: any SQLDatabase
    private let caches: RegistryCaches

    public init(database: RegistryDatabase) {
        sql = database.sql
        caches = database.caches
    }

    package static let columns = "m.id, m.owner_id, a.username AS owner, m.name, m.visibility, m.description, m.license, m.readme, m.hardware, m.created_at"

    /// `visible` restricts rows to public models and those `viewer` may act for.
    private func visible(_ viewer: Principal?) -> SQLQueryString {
        let user = viewer?.user.id ?? ""
        return "(m.visibility = 'public' OR m.owner_id = \(bind: user) OR m.owner_id IN (SELECT organization_id FROM memberships WHERE user_id = \(bind: user)))"
    }

    /// The model `owner/name` if `viewer` may see it. Every request naming a model asks this, so
    /// the row comes from the cache when it can (any change to models, accounts or memberships
    /// clears it on every replica) and visibility is checked here against the viewer's memberships.
    public func model(owner: String, name: String, viewer: Principal?) async throws -> ModelRecord? {
        let key = owner + "/" + name
        let model: ModelRecord
        if let cached = caches.models.get(key) {
            model = cached
        } else {
            guard let found = try await anyModel(owner: owner, name: name) else { return nil }
            caches.models.set(key, found)
            model = found
        }
        return model.isPublic || viewer?.actsFor(model.ownerID) == true ? model : nil
    }

    /// A model by id (internal: deployments and predictions already passed their checks).
    package func model(id: String) async throws -> ModelRecord? {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM models m JOIN accounts a ON a.id = m.owner_id WHERE m.id = \(bind: id)
            """).first(decoding: ModelRecord.self)
    }

    /// The model whatever its visibility (for deciding whether a name is taken).
    package func anyModel(owner: String, name: String) async throws -> ModelRecord? {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM models m JOIN accounts a ON a.id = m.owner_id
            WHERE a.username = \(bind: owner) AND m.name = \(bind: name)
            """).first(decoding: ModelRecord.self)
    }

    public func createModel(owner: Account, name: String, visibility: String, description: String?, license: String?,
                            hardware: String = "cpu") async throws -> ModelRecord {
        guard HardwareInventory.isValidSKU(hardware) else {
            throw StoreError(.invalid, "hardware \"\(hardware.prefix(64))\" is not a SKU: use lowercase letters, digits and '-' (for example cpu or gpu-a100); GET /v1/hardware lists what the fleet offers")
        }
        guard AccountStore.isValidName(name) else {
            throw StoreError(.invalid, "\"\(name)\" is not a valid model name: use lowercase letters, digits and single '-', '_' or '.' between them", code: "NAME_INVALID")
        }
        guard visibility == "public" || visibility == "private" else {
            throw StoreError(.invalid, "visibility must be public or private")
        }
        if try await anyModel(owner: owner.username, name: name) != nil {
            throw StoreError(.conflict, "the model name \(owner.username)/\(name) is taken")
        }
        let record = ModelRecord(id: UUID().uuidString.lowercased(), ownerID: owner.id, owner: owner.username, name: name, visibility: visibility,
                                 description: description, license: license, readme: nil, hardware: hardware, createdAt: Timestamp.now())
        try await sql.raw("""
            INSERT INTO models (id, owner_id, name, visibility, description, license, hardware, created_at)
            VALUES (\(bind: record.id), \(bind: owner.id), \(bind: name), \(bind: visibility), \(bind: description), \(bind: license),
                    \(bind: hardware), \(bind: record.createdAt))
            """).run()
        return record
    }

    /// Saves a model's settings. A readme that differs from the stored one counts as edited by
    /// hand, and later pushes leave it (``pushedReadme(_:model:)``).
    public func updateModel(_ model: ModelRecord) async throws {
        try await sql.raw("""
            UPDATE models SET visibility = \(bind: model.visibility), description = \(bind: model.description),
              license = \(bind: model.license), hardware = \(bind: model.hardware),
              readme_edited_at = CASE WHEN readme IS NOT DISTINCT FROM \(bind: model.readme) THEN readme_edited_at ELSE \(bind: Timestamp.now()) END,
              readme = \(bind: model.readme)
            WHERE id = \(bind: model.id)
            """).run()
        caches.changed()
    }

    /// What a push's `README.md` did to a model's readme.
    public enum PushedReadme: String, Sendable, Codable {
        /// The model had none; it is the readme now.
        case adopted
        /// It replaced the readme an earlier push brought.
        case updated
        /// The readme already says this.
        case unchanged
        /// The readme was edited on the web or through the API, and is kept as edited.
        case kept
    }

    /// Makes `text` the readme unless people edited it since pushes brought one.
    public func pushedReadme(_ text: String, model: ModelRecord) async throws -> PushedReadme {
        struct Row: Decodable { var readme: String?; var readme_edited_at: String? }
        let row = try await sql.raw("SELECT readme, readme_edited_at FROM models WHERE id = \(bind: model.id)").first(decoding: Row.self)
        guard let row else { throw StoreError(.notFound, "model \(model.repository) does not exist", code: "NAME_UNKNOWN") }
        if row.readme == text { return .unchanged }
        if row.readme_edited_at != nil, row.readme?.isEmpty == false { return .kept }
        // Conditional, so an edit that lands between the read and this write wins.
        let changed = try await sql.raw("""
            UPDATE models SET readme = \(bind: text), readme_edited_at = NULL
            WHERE id = \(bind: model.id) AND readme IS NOT DISTINCT FROM \(bind: row.readme)
            RETURNING id
            """).all()
        guard !changed.isEmpty else { return .kept }
        caches.changed()
        return row.readme?.isEmpty == false ? .updated : .adopted
    }

    /// Deletes a model with its versions, tags and manifests (blobs stay for other models).
    public func deleteModel(_ model: ModelRecord) async throws {
        try await sql.raw("DELETE FROM versions WHERE model_id = \(bind: model.id)").run()
        for table in ["tags", "manifests", "repository_blobs", "uploads"] {
            try await sql.raw("DELETE FROM \(unsafeRaw: table) WHERE repository = \(bind: model.repository)").run()
        }
        try await sql.raw("DELETE FROM models WHERE id = \(bind: model.id)").run()
        caches.changed()
    }

    /// Public models plus those `viewer` may see, newest first, after the cursor (created_at, id);
    /// only `owner`'s when given.
    public func list(viewer: Principal?, search: String? = nil, owner: String? = nil, publicOnly: Bool, after cursor: (String, String)?,
                     limit: Int) async throws -> [ModelRecord] {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.columns) FROM models m JOIN accounts a ON a.id = m.owner_id WHERE "
        if publicOnly { query = query + "m.visibility = 'public'" } else { query = query + visible(viewer) }
        if let owner { query = query + " AND a.username = \(bind: owner)" }
        if let search, !search.isEmpty {
            let pattern = "%" + search.lowercased() + "%"
            query = query + " AND (LOWER(m.name) LIKE \(bind: pattern) OR LOWER(a.username) LIKE \(bind: pattern) OR LOWER(COALESCE(m.description, '')) LIKE \(bind: pattern))"
        }
        if let (createdAt, id) = cursor {
            query = query + " AND (m.created_at < \(bind: createdAt) OR (m.created_at = \(bind: createdAt) AND m.id < \(bind: id)))"
        }
        query = query + " ORDER BY m.created_at DESC, m.id DESC LIMIT \(bind: limit)"
        return try await sql.raw(query).all(decoding: ModelRecord.self)
    }

    // MARK: - Versions

    public func versions(of model: ModelRecord) async throws -> [VersionRecord] {
        try await sql.raw("""
            SELECT id, manifest_digest, openapi_schema, created_at FROM versions WHERE model_id = \(bind: model.id) AND training_of IS NULL
            ORDER BY created_at DESC, id DESC
            """).all(decoding: VersionRecord.self)
    }

    /// The newest version of a model (what a prediction by model name runs), from the cache when it can.
    public func latestVersion(of model: ModelRecord) async throws -> VersionRecord? {
        if let cached = caches.latestVersions.get(model.id) { return cached }
        guard let latest = try await sql.raw("""
            SELECT id, manifest_digest, openapi_schema, created_at FROM versions WHERE model_id = \(bind: model.id) AND training_of IS NULL
            ORDER BY created_at DESC, id DESC LIMIT 1
            """).first(decoding: VersionRecord.self) else { return nil }
        caches.latestVersions.set(model.id, latest)
        return latest
    }

    /// The manifest digest of version `version` of the model with id `modelID`.
    package func manifestDigest(modelID: String, version: String) async throws -> String? {
        struct Row: Decodable { var manifest_digest: String }
        return try await sql.raw("SELECT manifest_digest FROM versions WHERE model_id = \(bind: modelID) AND id = \(bind: version)")
            .first(decoding: Row.self)?.manifest_digest
    }

    public func version(of model: ModelRecord, id: String) async throws -> VersionRecord? {
        try await sql.raw("""
            SELECT id, manifest_digest, openapi_schema, created_at FROM versions
            WHERE model_id = \(bind: model.id) AND id = \(bind: id) AND training_of IS NULL
            """).first(decoding: VersionRecord.self)
    }

    /// A version by id alone, in a model `viewer` may see (newest model first if several hold it).
    /// Every prediction by version id asks this, so the rows come from the cache when they can.
    public func findVersion(_ id: String, viewer: Principal?) async throws -> (ModelRecord, VersionRecord)? {
        let holders: [(ModelRecord, VersionRecord)]
        if let cached = caches.versions.get(id) {
            holders = cached
        } else {
            struct Row: Decodable {
                var model: ModelRecord
                var version: VersionRecord
                init(from decoder: any Decoder) throws {
                    model = try ModelRecord(from: decoder)
                    let container = try decoder.container(keyedBy: Keys.self)
                    version = VersionRecord(id: try container.decode(String.self, forKey: .version_id),
                                            manifestDigest: try container.decode(String.self, forKey: .manifest_digest),
                                            openapiSchema: try container.decode(String.self, forKey: .openapi_schema),
                                            createdAt: try container.decode(String.self, forKey: .version_created_at))
                }
                enum Keys: String, CodingKey { case version_id, manifest_digest, openapi_schema, version_created_at }
            }
            holders = try await sql.raw("""
                SELECT \(unsafeRaw: Self.columns), v.id AS version_id, v.manifest_digest, v.openapi_schema, v.created_at AS version_created_at
                FROM versions v JOIN models m ON m.id = v.model_id JOIN accounts a ON a.id = m.owner_id
                WHERE v.id = \(bind: id) AND v.training_of IS NULL ORDER BY v.created_at DESC
                """).all(decoding: Row.self).map { ($0.model, $0.version) }
            if !holders.isEmpty { caches.versions.set(id, holders) }
        }
        return holders.first { model, _ in model.isPublic || viewer?.actsFor(model.ownerID) == true }
    }

    /// Records a version (idempotent: pushing the same version again keeps its first date).
    /// With `trainingOf`, it is the config a training of that version runs under: the
    /// scheduler finds it by id, but no listing or lookup on a caller's behalf shows it.
    public func addVersion(_ model: ModelRecord, id: String, manifestDigest: String, openapiSchema: String, trainingOf: String? = nil) async throws {
        try await sql.raw("""
            INSERT INTO versions (model_id, id, manifest_digest, openapi_schema, created_at, training_of)
            VALUES (\(bind: model.id), \(bind: id), \(bind: manifestDigest), \(bind: openapiSchema), \(bind: Timestamp.now()), \(bind: trainingOf))
            ON CONFLICT (model_id, id) DO NOTHING
            """).run()
        caches.changed()
    }

    /// Deletes a version with the configs its trainings ran under (versions trained from it
    /// keep everything they need: their own config and links to every layer).
    public func deleteVersion(_ model: ModelRecord, id: String) async throws {
        try await sql.raw("""
            DELETE FROM manifests WHERE repository = \(bind: model.repository)
              AND digest IN (SELECT manifest_digest FROM versions WHERE model_id = \(bind: model.id) AND training_of = \(bind: id))
            """).run()
        try await sql.raw("DELETE FROM versions WHERE model_id = \(bind: model.id) AND (id = \(bind: id) OR training_of = \(bind: id))").run()
        caches.changed()
    }

    // MARK: - Manifests and tags

    public func addManifest(repository: String, digest: String, mediaType: String, size: Int) async throws {
        try await sql.raw("""
            INSERT INTO manifests (repository, digest, media_type, size, created_at)
            VALUES (\(bind: repository), \(bind: digest), \(bind: mediaType), \(bind: size), \(bind: Timestamp.now()))
            ON CONFLICT (repository, digest) DO NOTHING
            """).run()
    }

    public struct ManifestRow: Sendable, Decodable {
        public var digest: String
        public var mediaType: String
        public var size: Int
        package enum CodingKeys: String, CodingKey { case digest, size; case mediaType = "media_type" }
    }

    public func manifest(repository: String, digest: String) async throws -> ManifestRow? {
        try await sql.raw("SELECT digest, media_type, size FROM manifests WHERE repository = \(bind: repository) AND digest = \(bind: digest)")
            .first(decoding: ManifestRow.self)
    }

    public func deleteManifest(repository: String, digest: String) async throws {
        try await sql.raw("DELETE FROM manifests WHERE repository = \(bind: repository) AND digest = \(bind: digest)").run()
        try await sql.raw("DELETE FROM tags WHERE repository = \(bind: repository) AND manifest_digest = \(bind: digest)").run()
    }

    public func setTag(repository: String, tag: String, digest: String) async throws {
        try await sql.raw("""
            INSERT INTO tags (repository, tag, manifest_digest, updated_at) VALUES (\(bind: repository), \(bind: tag), \(bind: digest), \(bind: Timestamp.now()))
            ON CONFLICT (repository, tag) DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at
            """).run()
    }

    public func tag(repository: String, tag: String) async throws -> String? {
        struct Row: Decodable { var manifest_digest: String }
        return try await sql.raw("SELECT manifest_digest FROM tags WHERE repository = \(bind: repository) AND tag = \(bind: tag)")
            .first(decoding: Row.self)?.manifest_digest
    }

    public func tags(repository: String, after last: String?, limit: Int) async throws -> [String] {
        struct Row: Decodable { var tag: String }
        return try await sql.raw("""
            SELECT tag FROM tags WHERE repository = \(bind: repository) AND tag > \(bind: last ?? "") ORDER BY tag LIMIT \(bind: limit)
            """).all(decoding: Row.self).map(\.tag)
    }

    public func deleteTag(repository: String, tag: String) async throws {
        try await sql.raw("DELETE FROM tags WHERE repository = \(bind: repository) AND tag = \(bind: tag)").run()
    }

    // MARK: - Blobs

    public func addBlob(_ digest: String, size: Int64, repository: String) async throws {
        let now = Timestamp.now()
        try await sql.raw("""
            INSERT INTO blobs (digest, size, created_at, touched_at) VALUES (\(bind: digest), \(bind: size), \(bind: now), \(bind: now))
            ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at
            """).run()
        try await linkBlob(digest, repository: repository)
    }

    // MARK: - Garbage collection (see GarbageCollector)

    /// A push named the blob (it asked whether it exists, mounted it, or a manifest refers to
    /// it): a collection spares it for its grace period. Written at most every 10 minutes.
    public func touchBlob(_ digest: String) async throws {
        let now = Date()
        try await sql.raw("""
            UPDATE blobs SET touched_at = \(bind: Timestamp.string(now))
            WHERE digest = \(bind: digest) AND (touched_at IS NULL OR touched_at < \(bind: Timestamp.string(now.addingTimeInterval(-600))))
            """).run()
    }

    /// Every manifest's digest (of every repository), or only those stored after `since`.
    package func manifestDigests(since: String? = nil) async throws -> Set<String> {
        struct Row: Decodable { var digest: String }
        var query: SQLQueryString = "SELECT DISTINCT digest FROM manifests"
        if let since { query = query + " WHERE created_at >= \(bind: since)" }
        return Set(try await sql.raw(query).all(decoding: Row.self).map(\.digest))
    }

    /// Forgets a blob nobody touched since `cutoff` (its row and its repository links), in one
    /// conditional statement: false when a push touched it meanwhile, so it must stay.
    package func forgetBlob(_ digest: String, untouchedSince cutoff: String) async throws -> Bool {
        struct Row: Decodable { var digest: String }
        try await sql.raw("""
            DELETE FROM blobs WHERE digest = \(bind: digest) AND COALESCE(touched_at, created_at) < \(bind: cutoff)
            """).run()
        let exists = try await sql.raw("SELECT digest FROM blobs WHERE digest = \(bind: digest)").all(decoding: Row.self)
        guard exists.isEmpty else { return false }
        try await sql.raw("DELETE FROM repository_blobs WHERE digest = \(bind: digest)").run()
        return true
    }

    public func linkBlob(_ digest: String, repository: String) async throws {
        try await sql.raw("""
            INSERT INTO repository_blobs (repository, digest) VALUES (\(bind: repository), \(bind: digest))
            ON CONFLICT (repository, digest) DO NOTHING
            """).run()
    }

    /// The blob's size if `repository` holds it.
    public func blob(_ digest: String, repository: String) async throws -> Int64? {
        struct Row: Decodable { var size: Int64 }
        return try await sql.raw("""
            SELECT b.size FROM blobs b JOIN repository_blobs r ON r.digest = b.digest
            WHERE b.digest = \(bind: digest) AND r.repository = \(bind: repository)
            """).first(decoding: Row.self)?.size
    }

    /// Bytes of registry blobs in `owner`'s repositories, each digest counted once.
    public func storageUsed(byOwner owner: String) async throws -> Int64 {
        struct Row: Decodable { var used: Int64? }
        // LIKE's wildcards in the name ('_' is valid in account names) are escaped.
        let pattern = owner.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "_", with: "\\_")
            .replacingOccurrences(of: "%", with: "\\%") + "/%"
        return try await sql.raw("""
            SELECT CAST(SUM(b.size) AS BIGINT) AS used FROM blobs b WHERE b.digest IN (
              SELECT digest FROM repository_blobs WHERE repository LIKE \(bind: pattern) ESCAPE '\\')
            """).first(decoding: Row.self)?.used ?? 0
    }

    // MARK: - Uploads

    public func createUpload(id: String, repository: String, userID: String) async throws {
        try await sql.raw("""
            INSERT INTO uploads (id, repository, user_id, created_at) VALUES (\(bind: id), \(bind: repository), \(bind: userID), \(bind: Timestamp.now()))
            """).run()
    }

    public func uploadExists(id: String, repository: String) async throws -> Bool {
        struct Row: Decodable { var id: String }
        return try await sql.raw("SELECT id FROM uploads WHERE id = \(bind: id) AND repository = \(bind: repository)").first(decoding: Row.self) != nil
    }

    /// Takes the upload's one writer lease for `writer` until `until` (a request that writes to
    /// it); false while another request holds an unexpired one, on any replica.
    public func claimUploadWriter(id: String, writer: String, until: Date) async throws -> Bool {
        struct Row: Decodable { var id: String }
        let now = Timestamp.now()
        return try await sql.raw("""
            UPDATE uploads SET writer = \(bind: writer), writer_until = \(bind: Timestamp.string(until))
            WHERE id = \(bind: id) AND (writer IS NULL OR writer_until < \(bind: now)) RETURNING id
            """).first(decoding: Row.self) != nil
    }

    /// Extends the lease while its writer is still at work (nothing happens for another writer).
    public func renewUploadWriter(id: String, writer: String, until: Date) async throws {
        try await sql.raw("""
            UPDATE uploads SET writer_until = \(bind: Timestamp.string(until)) WHERE id = \(bind: id) AND writer = \(bind: writer)
            """).run()
    }

    /// Frees every lease a replica's writers hold (`writer` is `REPLICA:…`): called when that
    /// replica starts, as what its previous process held died with it.
    public func releaseUploadWriters(heldBy replica: String) async throws {
        try await sql.raw("UPDATE uploads SET writer = NULL, writer_until = NULL WHERE writer LIKE \(bind: replica + ":%")").run()
    }

    /// Gives the lease back (only the writer that holds it can).
    public func releaseUploadWriter(id: String, writer: String) async throws {
        try await sql.raw("UPDATE uploads SET writer = NULL, writer_until = NULL WHERE id = \(bind: id) AND writer = \(bind: writer)").run()
    }

    public func deleteUpload(id: String) async throws {
        try await sql.raw("DELETE FROM uploads WHERE id = \(bind: id)").run()
    }
}
