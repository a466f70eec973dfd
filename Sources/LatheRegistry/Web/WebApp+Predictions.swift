import Foundation
import Hummingbird
import LatheSpec
import LatheStore

/// The prediction page (`urls.web`) with its actions, and the dashboard.
extension WebApp {
    func addPredictionPages(to web: RouterGroup<RegistryContext>) {
        web.get("p/:id") { _, context in try await predictionPage(try await visible(context), context: context) }
        web.post("p/:id/cancel") { request, context -> Response in
            let prediction = try await owned(request, context)
            try await predictions.stop(prediction)
            return redirect("/p/\(prediction.id)")
        }
        web.post("p/:id/share") { request, context -> Response in
            let prediction = try await owned(request, context)
            try await predictions.store.share(prediction.id)
            return redirect("/p/\(prediction.id)")
        }
        web.post("p/:id/delete") { request, context -> Response in
            let prediction = try await owned(request, context)
            try await predictions.remove(prediction)
            return redirect("/dashboard")
        }
        web.post("p/:id/example") { request, context -> Response in
            let prediction = try await visible(context)
            _ = try await WebForm.read(request, context: context)
            guard let model = try await registry.models.model(id: prediction.modelID), context.principal?.actsFor(model.ownerID) == true else {
                throw RegistryError(403, "only the model's owners may add examples")
            }
            guard prediction.status == .succeeded, !prediction.dataRemoved else { throw RegistryError(400, "only succeeded predictions can be examples") }
            try await predictions.store.addExample(modelID: model.id, predictionID: prediction.id)
            return redirect("/\(model.repository)")
        }
        web.get("dashboard") { request, context in try await dashboard(request, context) }
    }

    /// A prediction the visitor may see (theirs, their organization's, or shared); 404 otherwise.
    private func visible(_ context: RegistryContext) async throws -> PredictionRecord {
        guard let prediction = try await predictions.find(try context.parameters.require("id"), viewer: context.principal) else {
            throw RegistryError(404, "prediction not found")
        }
        return prediction
    }

    /// A prediction the signed-in user may change (created it, or acts for its account), after
    /// the form's CSRF check. Others get 404, as if it did not exist.
    private func owned(_ request: Request, _ context: RegistryContext) async throws -> PredictionRecord {
        let session = try signedIn(context)
        let prediction = try await visible(context)
        _ = try await WebForm.read(request, context: context)
        guard Self.mayChange(prediction, session.principal) else { throw RegistryError(404, "prediction not found") }
        return prediction
    }

    static func mayChange(_ prediction: PredictionRecord, _ principal: Principal?) -> Bool {
        guard let principal else { return false }
        return prediction.creatorID == principal.user.id || prediction.accountID.map { $0 != prediction.creatorID && principal.actsFor($0) } == true
    }

    private func predictionPage(_ record: PredictionRecord, context: RegistryContext) async throws -> Response {
        var spec: ModelSpec?
        let model = try await registry.models.model(id: record.modelID)
        if let model, let version = try await registry.models.version(of: model, id: record.version) {
            spec = try? await predictions.spec(of: model, version: version)
        }
        let mine = Self.mayChange(record, context.principal)
        var data: [String: Any] = [
            "id": record.id, "model": record.model, "version": record.version, "shortVersion": String(record.version.prefix(12)),
            "source": record.source, "status": record.status.rawValue, "createdAt": record.createdAt, "terminal": record.isTerminal,
            "stream": registry.streamPath(record.id), "concatenate": spec?.output.concatenate == true ? "true" : "false",
            "outputs": PredictionView.outputs(record, spec: spec, registry: registry), "inputs": PredictionView.inputs(record, spec: spec),
            "logs": record.logs, "dataRemoved": record.dataRemoved, "shared": record.shared, "webURL": "\(registry.baseURL)/p/\(record.id)",
            "canCancel": mine && !record.isTerminal, "canShare": mine && !record.shared, "canDelete": mine,
            "canExample": record.status == .succeeded && !record.dataRemoved && model.map { context.principal?.actsFor($0.ownerID) == true } == true,
        ]
        if let started = record.startedAt { data["startedAt"] = started }
        if let completed = record.completedAt { data["completedAt"] = completed }
        if let error = record.error { data["error"] = error }
        if let predict = PredictionView.seconds(record.predictTime) { data["predictTime"] = predict }
        if let total = PredictionView.seconds(record.totalTime) { data["totalTime"] = total }
        return pages.page("prediction", title: "Prediction \(record.id)", context: context, data)
    }

    private static let pageSize = 20

    private func dashboard(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let session = try signedIn(context)
        let query = request.uri.queryParameters
        // An unknown status filters nothing (the form offers only the known ones).
        let status = query["status"].flatMap { PredictionStatus(rawValue: String($0)) }, model = query["model"].map(String.init) ?? ""
        let cursor = query["cursor"].flatMap { ModelRoutes.decodeCursor(String($0)) }
        let rows = try await predictions.store.dashboard(account: session.acting.id, status: status, model: model, after: cursor, limit: Self.pageSize + 1)
        let page = Array(rows.prefix(Self.pageSize))
        var data: [String: Any] = [
            "statuses": PredictionStatus.allCases.map { ["value": $0.rawValue, "selected": $0 == status] },
            "model": model, "hasPredictions": !page.isEmpty,
            "predictions": page.map { record -> [String: Any] in
                let runTime = PredictionView.seconds(record.predictTime).map { "\($0) s" } ?? ""
                return ["id": record.id, "model": record.model, "shortVersion": String(record.version.prefix(12)), "status": record.status.rawValue,
                        "source": record.source, "createdAt": record.createdAt, "runTime": runTime]
            },
        ]
        if rows.count > Self.pageSize, let last = page.last {
            var components = URLComponents()
            components.path = "/dashboard"
            components.queryItems = [URLQueryItem(name: "status", value: status?.rawValue ?? ""), URLQueryItem(name: "model", value: model),
                                     URLQueryItem(name: "cursor", value: ModelRoutes.encodeCursor(last.createdAt, last.id))]
            data["next"] = components.string ?? "/dashboard"
        }
        return pages.page("dashboard", title: "Dashboard", context: context, data)
    }
}
