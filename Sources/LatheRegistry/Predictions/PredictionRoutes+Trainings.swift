import Foundation
import Hummingbird
import LatheCore
import LatheSpec
import LatheStore

/// Replicate's trainings API: `POST /v1/models/{o}/{n}/versions/{id}/trainings`,
/// `GET /v1/trainings[/{id}]` and `POST /v1/trainings/{id}/cancel`. A training is a prediction
/// of the version's `train:` entry point (``Trainings``) whose row says where its version goes.
extension PredictionRoutes {
    private struct TrainingBody: Decodable {
        var destination: String?
        var input: [String: JSONValue]?
        var webhook: String?
        var webhook_events_filter: [String]?
    }

    func addTrainings(to v1: RouterGroup<RegistryContext>) {
        v1.post("models/:owner/:name/versions/:id/trainings") { request, context in try await createTraining(request, context) }
        v1.get("trainings") { request, context in try await list(request, context, trainings: true) }
        v1.get("trainings/:id") { _, context in
            try jsonResponse(PredictionShape(registry: registry).json(try await visibleTraining(context)))
        }
        v1.post("trainings/:id/cancel") { _, context in
            let training = try await visibleTraining(context)
            guard training.creatorID == context.principal?.user.id else { throw RegistryError(403, "only the creator may cancel a training") }
            try await service.stop(training)
            return try jsonResponse(PredictionShape(registry: registry).json(try await visibleTraining(context)))
        }
    }

    private func visibleTraining(_ context: RegistryContext) async throws -> PredictionRecord {
        let training = try await visible(context)
        guard training.trainingOrder != nil else { throw RegistryError(404, "training not found (that id is a prediction's: GET /v1/predictions/{id})") }
        return training
    }

    private func createTraining(_ request: Request, _ context: RegistryContext) async throws -> Response {
        guard let principal = context.principal else {
            throw RegistryError(401, context.rejectedCredentials ? "the token is not valid (revoked or mistyped)" : "authentication required: send Authorization: Bearer <token>")
        }
        let model = try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
        let versionID = try context.parameters.require("id")
        guard let version = try await registry.models.version(of: model, id: versionID) else {
            throw RegistryError(404, "version \(versionID.prefix(64)) not found in \(model.repository)")
        }
        let body = try await request.decode(as: TrainingBody.self, context: context)
        // Replicate's answer for a destination that is missing, malformed or not the caller's
        // to push to; it says nothing about whether a private model sits there.
        let missing = RegistryError(404, "The specified training destination does not exist")
        guard let text = body.destination else {
            throw RegistryError(400, "destination is required: the model, owner/name, that gets the trained version (create it first)")
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { throw missing }
        let destination: ModelRecord
        do {
            guard let found = try await registry.writable(owner: parts[0], name: parts[1], context: context).1 else { throw missing }
            destination = found
        } catch let error as RegistryError where error.status != 401 {
            throw missing
        }
        let trainings = Trainings(registry: registry)
        guard let trainingVersion = try await trainings.trainingVersion(of: model, version) else {
            throw RegistryError(400, "version \(version.id.prefix(12)) of \(model.repository) declares no train: entry point, so it cannot be trained; "
                                + "add train: to its lathe.yaml and push it again")
        }
        let order = TrainingOrder(baseVersion: version.id, destinationID: destination.id, destination: destination.repository)
        let submitted: PredictionService.Submitted
        do {
            submitted = try await service.submit(model: model, version: trainingVersion, principal: principal, input: body.input ?? [:], source: "api",
                                                 webhook: body.webhook, events: body.webhook_events_filter, checkSafety: false, training: order)
        } catch let error as InputErrors {
            return try Self.invalidInput(error)
        }
        let record = try await submitted.persisted()
        var response = try jsonResponse(PredictionShape(registry: registry).json(try await service.find(record.id, viewer: principal) ?? record),
                                        status: .created)
        response.headers[.location] = "\(registry.baseURL)/v1/trainings/\(record.id)"
        return response
    }
}
