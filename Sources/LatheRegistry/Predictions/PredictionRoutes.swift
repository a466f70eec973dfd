import Foundation
import Hummingbird
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat
import LatheStore
import LatheCore

/// `/v1/predictions…` and `/v1/models/{o}/{n}/predictions` in Replicate's shapes, plus the
/// `/files/…` URLs of output files.
struct PredictionRoutes {
    let registry: Registry
    let scheduler: Scheduler
    static let pageSize = 100

    var store: PredictionStore { PredictionStore(database: registry.database) }
    /// The domain operations the API's routes share with the web pages.
    var service: PredictionService { PredictionService(registry: registry, scheduler: scheduler) }

    func add(to router: Router<RegistryContext>, v1: RouterGroup<RegistryContext>) {
        v1.post("predictions") { request, context in try await create(request, context, model: nil) }
        v1.post("models/:owner/:name/predictions") { request, context in
            let model = try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
            return try await create(request, context, model: model)
        }
        v1.get("predictions") { request, context in try await list(request, context) }
        addTrainings(to: v1)
        v1.delete("predictions/:id") { _, context -> Response in
            let prediction = try await visible(context)
            guard prediction.creatorID == context.principal?.user.id else { throw RegistryError(404, "prediction not found") }
            try await service.remove(prediction)
            return Response(status: .noContent)
        }
        v1.post("predictions/:id/share") { _, context in
            let prediction = try await visible(context)
            guard prediction.creatorID == context.principal?.user.id else { throw RegistryError(403, "only the creator may share a prediction") }
            try await store.share(prediction.id)
            return try jsonResponse(PredictionShape(registry: registry).json(try await service.current(prediction.id) ?? prediction))
        }
        v1.post("models/:owner/:name/examples") { request, context in
            struct Body: Decodable { var prediction_id: String }
            let model = try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
            guard let principal = context.principal, principal.actsFor(model.ownerID) else { throw RegistryError(403, "only the model's owners may add examples") }
            let body = try await request.decode(as: Body.self, context: context)
            guard let prediction = try await service.find(body.prediction_id, viewer: principal), prediction.modelID == model.id,
                  prediction.status == .succeeded, !prediction.dataRemoved else {
                throw RegistryError(400, "prediction_id must name a succeeded prediction of \(model.repository) that you can see")
            }
            try await store.addExample(modelID: model.id, predictionID: prediction.id)
            return try jsonResponse(PredictionShape(registry: registry).json(try await service.current(prediction.id) ?? prediction), status: .created)
        }
        v1.get("models/:owner/:name/examples") { _, context in
            let model = try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
            let examples = try await store.examples(modelID: model.id)
            return try jsonResponse(WireShapes.page(examples.map { PredictionShape(registry: registry).json($0) }, next: nil))
        }
        v1.get("hardware") { _, _ in
            // What the fleet offers now: the embedded worker's and every registered worker's SKUs.
            try jsonResponse(.array(await scheduler.hardwareOffered().map { .object(["sku": .string($0.sku), "name": .string($0.name)]) }))
        }
        v1.get("webhooks/default/secret") { _, context in
            guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
            return try jsonResponse(.object(["key": .string(try await scheduler.webhooks.secret(for: principal.user.id))]))
        }
        v1.get("predictions/:id") { _, context in
            try jsonResponse(PredictionShape(registry: registry).json(try await visible(context)))
        }
        v1.post("predictions/:id/cancel") { _, context in
            let prediction = try await visible(context)
            guard prediction.creatorID == context.principal?.user.id else { throw RegistryError(403, "only the creator may cancel a prediction") }
            try await service.stop(prediction)
            return try jsonResponse(PredictionShape(registry: registry).json(try await visible(context)))
        }
        router.get("v1/predictions/:id/stream") { request, context -> Response in
            // Open to whoever may see the prediction (its creator's token, a shared one), or to
            // the signed URL the prediction names as `urls.stream` (the JS client and the web
            // page's EventSource send no token). The id alone opens nothing: ids travel in
            // webhooks, logs and links.
            let id = try context.parameters.require("id")
            let signature = request.uri.queryParameters["sig"].map(String.init)
            let signed = signature.map { constantTimeEqual($0, registry.streamSignature(id)) } ?? false
            guard let prediction = signed ? try await service.current(id) : try await service.find(id, viewer: context.principal) else {
                throw RegistryError(404, "prediction not found (open its stream through urls.stream, or with its creator's token)")
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                            body: .init { writer in try await stream(prediction.id, to: &writer) })
        }
        router.get("files/:token/:name") { _, context -> Response in
            let token = try context.parameters.require("token"), name = try context.parameters.require("name")
            guard let key = BlobKey.output(token: token, name: name), let size = try await registry.blobs.size(of: key) else {
                throw HTTPError(.notFound)
            }
            // Streamed through the server (never a redirect): the sandboxing headers must apply.
            var headers = OutputFiles.headers(type: OutputFiles.mediaType(name))
            headers[.contentLength] = String(size)
            return Response(status: .ok, headers: headers, body: registry.blobs.responseBody(key))
        }
    }

    func visible(_ context: RegistryContext) async throws -> PredictionRecord {
        if context.rejectedCredentials { throw RegistryError(401, "the token is not valid (revoked or mistyped)") }
        guard let prediction = try await service.find(try context.parameters.require("id"), viewer: context.principal) else {
            throw RegistryError(404, "prediction not found")
        }
        return prediction
    }

    private struct CreateBody: JSONValueDecodable {
        var version: String?
        var input: [String: JSONValue]?
        var webhook: String?
        var webhook_events_filter: [String]?
        var disable_safety_checker: Bool?
        /// Cog's request `context`: string keys and values the model reads as `current_scope().context`.
        var context: [String: JSONValue]?

        /// The fields as JSONDecoder reads them (absent or null is nil); nil for any other shape.
        init?(json: JSONValue) {
            guard let object = json.objectValue else { return nil }
            func field(_ key: String) -> JSONValue? { object[key].flatMap { $0 == .null ? nil : $0 } }
            func string(_ key: String) -> String?? {
                guard let value = field(key) else { return .some(nil) }
                return value.stringValue.map { .some($0) }
            }
            guard let version = string("version"), let webhook = string("webhook") else { return nil }
            self.version = version
            self.webhook = webhook
            if let value = field("input") {
                guard let input = value.objectValue else { return nil }
                self.input = input
            }
            if let value = field("context") {
                guard let context = value.objectValue else { return nil }
                self.context = context
            }
            if let value = field("disable_safety_checker") {
                guard case .bool(let flag) = value else { return nil }
                disable_safety_checker = flag
            }
            if let value = field("webhook_events_filter") {
                guard let items = value.arrayValue else { return nil }
                let names = items.compactMap(\.stringValue)
                guard names.count == items.count else { return nil }
                webhook_events_filter = names
            }
        }
    }

    /// The most entries, and bytes per key and per value, a request's `context` may carry.
    static let contextLimits = (entries: 64, key: 256, value: 4096)

    /// `context` as the model will see it, or a 400 naming what is wrong.
    static func requestContext(_ raw: [String: JSONValue]?) throws -> [String: String] {
        guard let raw else { return [:] }
        guard raw.count <= contextLimits.entries else {
            throw RegistryError(400, "context has \(raw.count) entries; at most \(contextLimits.entries) are allowed")
        }
        var context: [String: String] = [:]
        for (key, value) in raw {
            guard !key.isEmpty, key.utf8.count <= contextLimits.key else {
                throw RegistryError(400, "context: keys must be 1 to \(contextLimits.key) bytes long")
            }
            guard case .string(let text) = value else {
                throw RegistryError(400, "context.\(key) must be a string (context maps strings to strings, as in Cog)")
            }
            guard text.utf8.count <= contextLimits.value else {
                throw RegistryError(400, "context.\(key) is longer than \(contextLimits.value) bytes")
            }
            context[key] = text
        }
        return context
    }

    /// Creates a prediction of `pinned` (a deployment's version) or of what the body names.
    func create(_ request: Request, _ context: RegistryContext, model given: ModelRecord?, version pinned: VersionRecord? = nil) async throws -> Response {
        guard let principal = context.principal else {
            throw RegistryError(401, context.rejectedCredentials ? "the token is not valid (revoked or mistyped)" : "authentication required: send Authorization: Bearer <token>")
        }
        let body = try await request.decode(as: CreateBody.self, context: context)
        let requestContext = try Self.requestContext(body.context)
        var cancelAfter: TimeInterval?
        if let header = request.headers[.init("Cancel-After")!] {
            guard let seconds = RequestValues.duration(header, limit: 7 * 86_400), seconds >= 5 else {
                throw RegistryError(400, "Cancel-After must be a duration from 5s to 7 days, like 30s, 5m or 1h30m")
            }
            cancelAfter = seconds
        }
        let wait = try RequestValues.preferWait(request.headers[.init("Prefer")!])
        let (model, version): (ModelRecord, VersionRecord)
        if let given, let pinned { (model, version) = (given, pinned) } else { (model, version) = try await resolve(body.version, model: given, context: context) }
        let submitted: PredictionService.Submitted
        do {
            submitted = try await service.submit(model: model, version: version, principal: principal, input: body.input ?? [:], source: "api",
                                      webhook: body.webhook, events: body.webhook_events_filter, checkSafety: body.disable_safety_checker != true,
                                      context: requestContext, deferInsert: wait != nil && body.webhook == nil)
        } catch let error as InputErrors {
            return try Self.invalidInput(error)
        }
        let record = submitted.record
        if let seconds = cancelAfter {
            let id = record.id, scheduler = self.scheduler
            Task {
                try? await Task.sleep(seconds: seconds)
                try? await scheduler.cancel(id)
            }
        }
        var inline = false
        var done: PredictionRecord?
        if let seconds = wait {
            done = await scheduler.wait(for: record.id, seconds: seconds)
            inline = true
        }
        // A record handed to the waiter is written; otherwise the row's insert may still be going.
        if done == nil { _ = try await submitted.persisted() }
        // A prediction that ended while this waited is answered as it ended (its creator asks).
        var current = if let done { done } else { try await service.find(record.id, viewer: principal) ?? record }
        // A wait that runs out answers the prediction's real status (`processing` once it
        // runs), except to Replicate's official clients, which treat any status but `starting`
        // as finished: they get `starting` and poll.
        if inline && !current.isTerminal && RequestValues.expectsStartingAfterWait(request.headers[.userAgent]) { current.status = .starting }
        var response = try jsonResponse((inline ? await PredictionShape(registry: registry).jsonInliningFiles(current) : PredictionShape(registry: registry).json(current)), status: .created)
        response.headers[.location] = "\(registry.baseURL)/v1/predictions/\(record.id)"
        return response
    }

    /// 422 with one entry per field that is wrong, as Replicate answers: a problem document
    /// like every other error under /v1.
    static func invalidInput(_ error: InputErrors) throws -> Response {
        let detail = error.fields.map(\.description).joined(separator: "; ")
        let body: JSONValue = .object(["title": .string("Invalid input"), "status": .int(422), "detail": .string(detail),
                                       "invalid_fields": .array(error.fields.map { .object(["field": .string($0.field), "description": .string($0.message)]) })])
        var response = try jsonResponse(body, status: .unprocessableContent)
        response.headers[.contentType] = "application/problem+json"
        return response
    }

    /// `id`, `owner/name:id` or `owner/name` (latest), or the model of the URL.
    private func resolve(_ text: String?, model given: ModelRecord?, context: RegistryContext) async throws -> (ModelRecord, VersionRecord) {
        if let given {
            guard let latest = try await registry.models.latestVersion(of: given) else { throw RegistryError(404, "\(given.repository) has no versions yet") }
            return (given, latest)
        }
        guard let text, !text.isEmpty else { throw RegistryError(400, "version is required: a version id, owner/name:id or owner/name") }
        if let colon = text.firstIndex(of: ":") {
            let parts = text[..<colon].split(separator: "/").map(String.init)
            guard parts.count == 2 else { throw RegistryError(400, "\"\(text)\" is not owner/name:version") }
            let model = try await registry.readable(owner: parts[0], name: parts[1], context: context)
            guard let version = try await registry.models.version(of: model, id: String(text[text.index(after: colon)...])) else {
                throw RegistryError(404, "version not found in \(model.repository)")
            }
            return (model, version)
        }
        if text.contains("/") {
            let parts = text.split(separator: "/").map(String.init)
            let model = try await registry.readable(owner: parts[0], name: parts.count > 1 ? parts[1] : "", context: context)
            guard let latest = try await registry.models.latestVersion(of: model) else { throw RegistryError(404, "\(model.repository) has no versions yet") }
            return (model, latest)
        }
        guard let found = try await registry.models.findVersion(text, viewer: context.principal) else { throw RegistryError(404, "version \(text) not found") }
        return found
    }

    /// `GET /v1/predictions`, or with `trainings`, `GET /v1/trainings`: the caller's own, a page at a time.
    func list(_ request: Request, _ context: RegistryContext, trainings: Bool = false) async throws -> Response {
        guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
        let query = request.uri.queryParameters
        let cursor = query["cursor"].flatMap { ModelRoutes.decodeCursor(String($0)) }
        let rows = try await store.list(viewer: principal, trainings: trainings, after: cursor, createdAfter: query["created_after"].map(String.init),
                                        createdBefore: query["created_before"].map(String.init), limit: Self.pageSize + 1)
        let page = Array(rows.prefix(Self.pageSize))
        let path = trainings ? "trainings" : "predictions"
        let next = rows.count > Self.pageSize ? page.last.map { "\(registry.baseURL)/v1/\(path)?cursor=\(ModelRoutes.encodeCursor($0.createdAt, $0.id))" } : nil
        return try jsonResponse(WireShapes.page(page.map { PredictionShape(registry: registry).json($0) }, next: next))
    }

    /// Server-sent events: `output` per new item, `logs` per new log text, then `error` (on
    /// failure) and `done`; a comment every 15 s keeps proxies from closing the connection.
    /// The stream starts from the row and follows the prediction's event log, woken when
    /// progress is written (here, or on another replica by `NOTIFY`); without a wake-up for a
    /// second it reads the row again, which also covers a notification lost in a reconnect.
    private func stream(_ id: String, to writer: inout any ResponseBodyWriter) async throws {
        var sentItems = 0, sentLogs = 0, event = 0, lastWrite = Date()
        func send(_ name: String, _ data: String) async throws {
            event += 1
            let lines = data.split(separator: "\n", omittingEmptySubsequences: false).map { "data: \($0)" }.joined(separator: "\n")
            try await writer.write(ByteBuffer(string: "event: \(name)\nid: \(id):\(event)\n\(lines)\n\n"))
            lastWrite = Date()
        }
        func sendItems(_ items: ArraySlice<JSONValue>) async throws {
            for item in items {
                try await send("output", item.stringValue ?? String(decoding: (try? JSON.canonical(item)) ?? Data(), as: UTF8.self))
            }
            sentItems += items.count
        }
        let signals = scheduler.signals
        let follower = signals.follow(id)
        defer { signals.stop(follower, following: id) }
        var readRow = true, seq: Int64 = 0
        while true {
            if readRow {
                // Everything the row holds that was not sent yet; events up to `seq` are in it.
                guard let (record, newest) = try await store.snapshot(id) else { break }
                seq = newest
                let output = record.output.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
                if case .array(let items) = output, items.count > sentItems { try await sendItems(items[sentItems...]) }
                if record.logs.utf8.count > sentLogs {
                    try await send("logs", String(decoding: Array(record.logs.utf8)[sentLogs...], as: UTF8.self))
                    sentLogs = record.logs.utf8.count
                }
                if record.isTerminal {
                    // A model without an iterator output streams its one output at the end.
                    if let output, output != .null, output.arrayValue == nil, sentItems == 0 {
                        try await send("output", output.stringValue ?? String(decoding: try JSON.canonical(output), as: UTF8.self))
                    }
                    if record.status == .failed {
                        try await send("error", String(decoding: try JSON.canonical(["detail": record.error ?? "prediction failed"]), as: UTF8.self))
                    }
                    try await send("done", record.status == .canceled ? #"{"reason":"canceled"}"# : "{}")
                    break
                }
            }
            if Date().timeIntervalSince(lastWrite) > 15 {
                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                lastWrite = Date()
            }
            guard await signals.next(follower, seconds: 1) else {
                readRow = true
                continue
            }
            let changes = try await store.changes(of: id, after: seq)
            // Woken with nothing logged: finished some other way (a lease expired, canceled in
            // the queue), so the row says what happened.
            readRow = changes.isEmpty
            for change in changes {
                seq = change.seq
                switch change.kind {
                case .progress:
                    try await sendItems(change.items[...])
                    if !change.logs.isEmpty {
                        try await send("logs", change.logs)
                        sentLogs += change.logs.utf8.count
                    }
                case .done:
                    readRow = true
                }
            }
        }
        try await writer.finish(nil)
    }

}

