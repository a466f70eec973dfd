import Foundation
import Hummingbird
import LatheRunner
import LatheSpec
import NIOCore
import NIOFoundationCompat
import LatheStore
import LatheCore

/// `/v1/models…`: models and versions in Replicate's shapes.
struct ModelRoutes {
    let registry: Registry
    static let pageSize = 25

    func add(to v1: RouterGroup<RegistryContext>) {
        v1.post("models") { request, context in try await create(request, context) }
        v1.get("models") { request, context in try await list(request, context, search: nil) }
        v1.on("models", method: HTTPRequest.Method("QUERY")!) { request, context in
            let text = String(buffer: try await request.body.collect(upTo: 4096))
            return try await list(request, context, search: text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        v1.get("models/:owner/:name") { _, context in
            let model = try await readable(context)
            return try jsonResponse(try await shape(model))
        }
        v1.patch("models/:owner/:name") { request, context in try await update(request, context) }
        v1.delete("models/:owner/:name") { _, context in
            let model = try await manageable(context, ownerRole: true)
            try await registry.models.deleteModel(model)
            return Response(status: .noContent)
        }
        v1.get("models/:owner/:name/readme") { _, context -> Response in
            let model = try await readable(context)
            guard let readme = model.readme, !readme.isEmpty else { throw RegistryError(404, "\(model.repository) has no readme") }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: readme)))
        }
        // Lathe's extension for `lathe push`: the project's README.md becomes the readme unless
        // people edited the readme on the web or through PATCH since.
        v1.put("models/:owner/:name/readme") { request, context -> Response in
            struct Body: Decodable { var readme: String }
            let model = try await manageable(context, ownerRole: false)
            let body = try await request.decode(as: Body.self, context: context)
            let outcome = try await registry.models.pushedReadme(body.readme, model: model)
            return try jsonResponse(.object(["readme": .string(outcome.rawValue)]))
        }
        v1.get("models/:owner/:name/versions") { _, context in
            let model = try await readable(context)
            let versions = try await registry.models.versions(of: model)
            return try jsonResponse(WireShapes.page(versions.map(WireShapes.version), next: nil))
        }
        v1.get("models/:owner/:name/versions/:id") { _, context in
            let model = try await readable(context)
            guard let version = try await registry.models.version(of: model, id: try context.parameters.require("id")) else {
                throw RegistryError(404, "version not found in \(model.repository)")
            }
            return try jsonResponse(WireShapes.version(version))
        }
        v1.delete("models/:owner/:name/versions/:id") { _, context in
            let model = try await manageable(context, ownerRole: false)
            let id = try context.parameters.require("id")
            guard let version = try await registry.models.version(of: model, id: id) else { throw RegistryError(404, "version not found in \(model.repository)") }
            try await registry.models.deleteVersion(model, id: id)
            try await registry.models.deleteManifest(repository: model.repository, digest: version.manifestDigest)
            if let newest = try await registry.models.latestVersion(of: model) {
                try await registry.models.setTag(repository: model.repository, tag: "latest", digest: newest.manifestDigest)
            }
            return Response(status: .noContent)
        }
    }

    // MARK: - Handlers

    /// The model object, with its run count, default example and cover image (the first
    /// example's image output, as the web's explore cards show).
    private func shape(_ model: ModelRecord) async throws -> JSONValue {
        let store = PredictionStore(database: registry.database)
        let examples = try await store.examples(modelID: model.id)
        guard case .object(var object) = WireShapes.model(model, latest: try await registry.models.latestVersion(of: model),
                                                          baseURL: registry.baseURL) else { return .null }
        object["run_count"] = .int(try await store.runCount(modelID: model.id))
        object["hardware"] = .string(model.hardware)
        if let example = examples.first { object["default_example"] = PredictionShape(registry: registry).json(example) }
        if let cover = examples.lazy.compactMap({ PredictionView.image(in: $0, registry: self.registry) }).first {
            object["cover_image_url"] = .string(cover.hasPrefix("/") ? registry.baseURL + cover : cover)
        }
        return .object(object)
    }

    private func readable(_ context: RegistryContext) async throws -> ModelRecord {
        try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
    }

    private func manageable(_ context: RegistryContext, ownerRole: Bool) async throws -> ModelRecord {
        try await registry.manageable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"),
                                      context: context, ownerRole: ownerRole)
    }

    private struct CreateBody: Decodable {
        var owner: String
        var name: String
        var visibility: String
        var description: String?
        var license: String?
        var license_url: String?
        var hardware: String?
    }

    private func create(_ request: Request, _ context: RegistryContext) async throws -> Response {
        guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
        let body = try await request.decode(as: CreateBody.self, context: context)
        guard let owner = try await registry.accounts.account(named: body.owner), principal.actsFor(owner.id) else {
            throw RegistryError(403, "you may not create models for \(body.owner)")
        }
        let model = try await registry.models.createModel(owner: owner, name: body.name, visibility: body.visibility,
                                                          description: body.description, license: body.license ?? body.license_url,
                                                          hardware: body.hardware ?? "cpu")
        return try jsonResponse(try await shape(model), status: .created)
    }

    private struct UpdateBody: Decodable {
        var description: String?
        var readme: String?
        var license: String?
        var license_url: String?
        var visibility: String?
        var hardware: String?
    }

    private func update(_ request: Request, _ context: RegistryContext) async throws -> Response {
        var model = try await manageable(context, ownerRole: false)
        let body = try await request.decode(as: UpdateBody.self, context: context)
        if let value = body.description { model.description = value }
        if let value = body.readme { model.readme = value }
        if let value = body.license ?? body.license_url { model.license = value }
        if let value = body.visibility {
            guard value == "public" || value == "private" else { throw RegistryError(400, "visibility must be public or private") }
            model.visibility = value
        }
        if let value = body.hardware {
            guard HardwareInventory.isValidSKU(value) else { throw RegistryError(400, "hardware must be a SKU such as cpu or gpu-a100 (GET /v1/hardware lists them)") }
            model.hardware = value
        }
        try await registry.models.updateModel(model)
        return try jsonResponse(try await shape(model))
    }

    /// Public models (GET) or everything the caller can see that matches (QUERY), newest first.
    private func list(_ request: Request, _ context: RegistryContext, search: String?) async throws -> Response {
        if context.rejectedCredentials { throw RegistryError(401, "the token is not valid (revoked or mistyped)") }
        let cursor = request.uri.queryParameters["cursor"].flatMap { Self.decodeCursor(String($0)) }
        let rows = try await registry.models.list(viewer: context.principal, search: search, publicOnly: search == nil, after: cursor,
                                                  limit: Self.pageSize + 1)
        let page = Array(rows.prefix(Self.pageSize))
        var results: [JSONValue] = []
        for model in page { results.append(try await shape(model)) }
        let next = rows.count > Self.pageSize ? page.last.map { "\(registry.baseURL)/v1/models?cursor=\(Self.encodeCursor($0))" } : nil
        return try jsonResponse(WireShapes.page(results, next: next))
    }

    /// Opaque cursors: base64url of "created_at|id" of the last row of the previous page.
    static func encodeCursor(_ model: ModelRecord) -> String {
        encodeCursor(model.createdAt, model.id)
    }

    static func encodeCursor(_ createdAt: String, _ id: String) -> String {
        Data("\(createdAt)|\(id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decodeCursor(_ text: String) -> (String, String)? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let decoded = String(data: data, encoding: .utf8) else { return nil }
        let parts = decoded.split(separator: "|", maxSplits: 1).map(String.init)
        return parts.count == 2 ? (parts[0], parts[1]) : nil
    }
}
