import Foundation
import SQLKit

/// A deployment: a name that pins one version of a model, with instances kept warm.
package struct DeploymentRecord: Sendable, Codable {
    package var id: String
    package var ownerID: String
    package var name: String
    package var modelID: String
    package var version: String
    package var hardware: String
    package var minInstances: Int
    package var maxInstances: Int
    package var release: Int
    package var createdBy: String
    package var createdAt: String

    package enum CodingKeys: String, CodingKey {
        case id, name, version, hardware, release
        case ownerID = "owner_id", modelID = "model_id", minInstances = "min_instances", maxInstances = "max_instances"
        case createdBy = "created_by", createdAt = "created_at"
    }

    /// Every stored property, as the memberwise initializer would take them.
    package init(id: String, ownerID: String, name: String, modelID: String, version: String, hardware: String,
                 minInstances: Int, maxInstances: Int, release: Int, createdBy: String, createdAt: String) {
        self.id = id
        self.ownerID = ownerID
        self.name = name
        self.modelID = modelID
        self.version = version
        self.hardware = hardware
        self.minInstances = minInstances
        self.maxInstances = maxInstances
        self.release = release
        self.createdBy = createdBy
        self.createdAt = createdAt
    }
}

/// Deployments (`/v1/deployments`).
package struct DeploymentStore: Sendable {
    let sql: any SQLDatabase
    package static let columns = "id, owner_id, name, model_id, version, hardware, min_instances, max_instances, release, created_by, created_at"

    package init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// Every deployment (to restore their bounds at start).
    package func all() async throws -> [DeploymentRecord] {
        try await sql.raw("SELECT \(unsafeRaw: Self.columns) FROM deployments").all(decoding: DeploymentRecord.self)
    }

    /// The deployments of `user` and of the organizations they belong to, oldest first.
    package func visible(to user: String) async throws -> [DeploymentRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM deployments WHERE owner_id = \(bind: user)
               OR owner_id IN (SELECT organization_id FROM memberships WHERE user_id = \(bind: user)) ORDER BY created_at
            """).all(decoding: DeploymentRecord.self)
    }

    package func find(owner: String, name: String) async throws -> DeploymentRecord? {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM deployments WHERE owner_id = \(bind: owner) AND name = \(bind: name)
            """).first(decoding: DeploymentRecord.self)
    }

    /// Inserts a new deployment; 409 when the owner has one of that name.
    package func insert(_ record: DeploymentRecord) async throws {
        do {
            try await sql.raw("""
                INSERT INTO deployments (id, owner_id, name, model_id, version, hardware, min_instances, max_instances, release, created_by, created_at)
                VALUES (\(bind: record.id), \(bind: record.ownerID), \(bind: record.name), \(bind: record.modelID), \(bind: record.version),
                        \(bind: record.hardware), \(bind: record.minInstances), \(bind: record.maxInstances), \(bind: record.release),
                        \(bind: record.createdBy), \(bind: record.createdAt))
                """).run()
        } catch {
            throw StoreError(.conflict, "you already have a deployment named \(record.name)")
        }
    }

    package func update(_ record: DeploymentRecord) async throws {
        try await sql.raw("""
            UPDATE deployments SET version = \(bind: record.version), min_instances = \(bind: record.minInstances), max_instances = \(bind: record.maxInstances),
              hardware = \(bind: record.hardware), release = \(bind: record.release) WHERE id = \(bind: record.id)
            """).run()
    }

    package func delete(_ id: String) async throws {
        try await sql.raw("DELETE FROM deployments WHERE id = \(bind: id)").run()
    }

    /// Instances the owner's other deployments keep warm (min_instances summed).
    package func warmInstances(owner: String, excluding id: String?) async throws -> Int {
        struct Row: Decodable { var total: Int? }
        return try await sql.raw("""
            SELECT CAST(SUM(min_instances) AS BIGINT) AS total FROM deployments WHERE owner_id = \(bind: owner) AND id <> \(bind: id ?? "")
            """).first(decoding: Row.self)?.total ?? 0
    }
}
