import Foundation
import Hummingbird
import LatheRunner
import LatheSpec
import LatheStore
import LatheCore

/// `/v1/deployments…` in Replicate's shapes, and predictions through a deployment.
struct DeploymentRoutes {
    let registry: Registry
    let scheduler: Scheduler
    let predictions: PredictionRoutes
    var store: DeploymentStore { DeploymentStore(database: registry.database) }

    func add(to v1: RouterGroup<RegistryContext>) {
        v1.post("deployments") { request, context in try await create(request, context) }
        v1.get("deployments") { _, context in
            let principal = try signedIn(context)
            let rows = try await store.visible(to: principal.user.id)
            var results: [JSONValue] = []
            for row in rows { results.append(try await shape(row)) }
            return try jsonResponse(WireShapes.page(results, next: nil))
        }
        v1.get("deployments/:owner/:name") { _, context in try jsonResponse(try await shape(try await deployment(context))) }
        v1.patch("deployments/:owner/:name") { request, context in try await update(request, context) }
        v1.delete("deployments/:owner/:name") { _, context -> Response in
            let found = try await deployment(context)
            try await store.delete(found.id)
            await scheduler.clearBounds(version: found.version)
            return Response(status: .noContent)
        }
        v1.post("deployments/:owner/:name/predictions") { request, context in
            let found = try await deployment(context)
            guard let model = try await registry.models.model(id: found.modelID),
                  let version = try await registry.models.version(of: model, id: found.version) else {
                throw RegistryError(404, "the deployment's version is gone")
            }
            return try await predictions.create(request, context, model: model, version: version)
        }
    }


    private func signedIn(_ context: RegistryContext) throws -> Principal {
        guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
        return principal
    }

    private func deployment(_ context: RegistryContext) async throws -> DeploymentRecord {
        let principal = try signedIn(context)
        guard let owner = try await registry.accounts.account(named: try context.parameters.require("owner")), principal.actsFor(owner.id),
              let found = try await store.find(owner: owner.id, name: try context.parameters.require("name")) else {
            throw RegistryError(404, "deployment not found")
        }
        return found
    }

    private func shape(_ deployment: DeploymentRecord) async throws -> JSONValue {
        let owner = try await registry.accounts.account(id: deployment.ownerID)
        let creator = try await registry.accounts.account(id: deployment.createdBy)
        let model = try await registry.models.model(id: deployment.modelID)
        return .object([
            "owner": .string(owner?.username ?? ""), "name": .string(deployment.name),
            "current_release": .object([
                "number": .int(deployment.release), "model": .string(model?.repository ?? ""), "version": .string(deployment.version),
                "created_at": .string(deployment.createdAt), "created_by": creator.map(WireShapes.account) ?? .null,
                "configuration": .object(["hardware": .string(deployment.hardware), "min_instances": .int(deployment.minInstances),
                                          "max_instances": .int(deployment.maxInstances)]),
            ]),
        ])
    }

    private struct Body: Decodable {
        var name: String?
        var model: String?
        var version: String?
        var hardware: String?
        var min_instances: Int?
        var max_instances: Int?
    }

    private func validBounds(_ min: Int, _ max: Int) throws {
        guard (0...5).contains(min), (0...20).contains(max), max >= min else {
            throw RegistryError(400, "min_instances must be 0–5 and max_instances 0–20, with max ≥ min")
        }
    }

    /// An account's deployments together keep at most the operator's limit of instances warm.
    private func withinWarmLimit(owner: String, excluding id: String?, adding minimum: Int) async throws {
        let others = try await store.warmInstances(owner: owner, excluding: id)
        let limit = await scheduler.warmLimit
        guard others + minimum <= limit else {
            throw RegistryError(400, "min_instances: \(minimum) would keep \(others + minimum) instances warm for this account, over the limit of \(limit) per account; "
                                + "lower min_instances here or on another deployment")
        }
    }

    private func validHardware(_ sku: String?) throws {
        if let sku, !HardwareInventory.isValidSKU(sku) {
            throw RegistryError(400, "hardware must be a SKU such as cpu or gpu-a100 (GET /v1/hardware lists what the fleet offers)")
        }
    }

    private func create(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let principal = try signedIn(context)
        let body = try await request.decode(as: Body.self, context: context)
        guard let name = body.name, let modelName = body.model, let versionID = body.version else {
            throw RegistryError(400, "name, model, version, hardware, min_instances and max_instances are required")
        }
        guard AccountStore.isValidName(name) else { throw RegistryError(400, "\"\(name)\" is not a valid deployment name") }
        let parts = modelName.split(separator: "/").map(String.init)
        guard parts.count == 2 else { throw RegistryError(400, "model must be owner/name") }
        let model = try await registry.readable(owner: parts[0], name: parts[1], context: context)
        guard let version = try await registry.models.version(of: model, id: versionID) else { throw RegistryError(404, "version not found in \(model.repository)") }
        let min = body.min_instances ?? 0, max = body.max_instances ?? 1
        try validBounds(min, max)
        try validHardware(body.hardware)
        try await withinWarmLimit(owner: principal.user.id, excluding: nil, adding: min)
        let record = DeploymentRecord(id: UUID().uuidString.lowercased(), ownerID: principal.user.id, name: name, modelID: model.id, version: version.id,
                                      hardware: body.hardware ?? model.hardware, minInstances: min, maxInstances: max, release: 1,
                                      createdBy: principal.user.id, createdAt: Timestamp.now())
        try await store.insert(record)
        try await scheduler.setBounds(version: version.id, manifestDigest: version.manifestDigest, modelID: model.id, min: min, max: max,
                                      account: record.ownerID, hardware: record.hardware)
        return try jsonResponse(try await shape(record), status: .created)
    }

    private func update(_ request: Request, _ context: RegistryContext) async throws -> Response {
        var found = try await deployment(context)
        let body = try await request.decode(as: Body.self, context: context)
        guard let model = try await registry.models.model(id: found.modelID) else { throw RegistryError(404, "the deployment's model is gone") }
        if let versionID = body.version {
            guard try await registry.models.version(of: model, id: versionID) != nil else { throw RegistryError(404, "version not found") }
            await scheduler.clearBounds(version: found.version)
            found.version = versionID
        }
        if let value = body.min_instances { found.minInstances = value }
        if let value = body.max_instances { found.maxInstances = value }
        try validHardware(body.hardware)
        if let value = body.hardware { found.hardware = value }
        try validBounds(found.minInstances, found.maxInstances)
        try await withinWarmLimit(owner: found.ownerID, excluding: found.id, adding: found.minInstances)
        found.release += 1
        try await store.update(found)
        guard let version = try await registry.models.version(of: model, id: found.version) else { throw RegistryError(404, "version not found") }
        try await scheduler.setBounds(version: found.version, manifestDigest: version.manifestDigest, modelID: model.id,
                                      min: found.minInstances, max: found.maxInstances, account: found.ownerID, hardware: found.hardware)
        return try jsonResponse(try await shape(found))
    }
}
