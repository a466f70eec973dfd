import Foundation
import LatheSpec
import LatheStore
import LatheCore

/// Replicate's JSON shapes for models and versions (shared/reference/replicate-api.md §2).
enum WireShapes {
    /// The Cog schema version Lathe's OpenAPI documents follow, with Lathe's own as the local part.
    static let cogVersion = "0.16.0+lathe.0.1.0"

    static func version(_ record: VersionRecord) -> JSONValue {
        let schema = (try? JSONDecoder().decode(JSONValue.self, from: Data(record.openapiSchema.utf8))) ?? .object([:])
        return .object(["id": .string(record.id), "created_at": .string(record.createdAt), "cog_version": .string(cogVersion),
                        "openapi_schema": schema])
    }

    static func model(_ record: ModelRecord, latest: VersionRecord?, baseURL: String) -> JSONValue {
        .object([
            "url": .string("\(baseURL)/\(record.owner)/\(record.name)"),
            "owner": .string(record.owner), "name": .string(record.name),
            "description": .optional(record.description), "visibility": .string(record.visibility),
            "github_url": .null, "paper_url": .null, "license_url": .optional(record.license), "weights_url": .null,
            "run_count": .int(0), "cover_image_url": .null, "default_example": .null,  // filled in by ModelRoutes
            "latest_version": latest.map(version) ?? .null, "is_official": .bool(false), "created_at": .string(record.createdAt),
        ])
    }

    static func account(_ account: Account) -> JSONValue {
        .object(["type": .string(account.kind.rawValue), "username": .string(account.username), "name": .string(account.name ?? account.username),
                 "github_url": .null, "avatar_url": .null])
    }

    static func token(_ record: TokenRecord) -> JSONValue {
        .object(["id": .string(record.id), "label": .string(record.label), "created_at": .string(record.createdAt),
                 "last_used_at": .optional(record.lastUsedAt), "revoked_at": .optional(record.revokedAt)])
    }

    static func page(_ results: [JSONValue], next: String?) -> JSONValue {
        .object(["results": .array(results), "next": .optional(next), "previous": .null])
    }
}
