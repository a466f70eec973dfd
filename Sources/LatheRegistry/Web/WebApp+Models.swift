import Foundation
import Hummingbird
import LatheSpec
import LatheStore

/// Explore and search, the model page with its generated run form, and model management.
extension WebApp {
    func addModelPages(to web: RouterGroup<RegistryContext>) {
        web.get("") { request, context in try await explore(request, context) }
        web.get("new") { _, context in
            let session = try signedIn(context)
            return pages.page("model_new", title: "New model", context: context, ["accounts": try await actingOptions(session)])
        }
        web.post("new") { request, context -> Response in
            let session = try signedIn(context)
            let form = try await WebForm.read(request, context: context)
            guard let owner = try await actingChoices(session).first(where: { $0.username == form["owner"] }) else {
                throw RegistryError(404, "no such account")
            }
            do {
                let description = form["description"].flatMap { $0.isEmpty ? nil : $0 }
                let model = try await registry.models.createModel(owner: owner, name: form["name"] ?? "",
                                                                  visibility: form["visibility"] == "private" ? "private" : "public",
                                                                  description: description, license: nil)
                return redirect("/\(model.repository)")
            } catch let error as StoreError where error.kind == .invalid || error.kind == .conflict {
                return pages.page("model_new", title: "New model", context: context, status: .unprocessableContent, [
                    "accounts": try await actingOptions(session), "formError": error.message, "name": form["name"] ?? "",
                    "description": form["description"] ?? "",
                ])
            }
        }
        web.get(":owner") { _, context in try await ownerPage(context) }
        web.get(":owner/:name") { _, context in
            try await modelPage(try await readable(context), context: context)
        }
        web.post(":owner/:name/predictions") { request, context in try await run(request, context) }
        web.get(":owner/:name/edit") { _, context in
            let model = try await manageable(context)
            return pages.page("model_edit", title: "Settings", context: context, [
                "repository": model.repository, "description": model.description ?? "", "readme": model.readme ?? "", "isPublic": model.isPublic,
            ])
        }
        web.post(":owner/:name/edit") { request, context -> Response in
            var model = try await manageable(context)
            let form = try await WebForm.read(request, context: context)
            model.description = form["description"].flatMap { $0.isEmpty ? nil : $0 }
            model.readme = form["readme"].flatMap { $0.isEmpty ? nil : $0 }
            model.visibility = form["visibility"] == "private" ? "private" : "public"
            try await registry.models.updateModel(model)
            return redirect("/\(model.repository)")
        }
        web.post(":owner/:name/delete") { request, context -> Response in
            let model = try await registry.manageable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"),
                                                      context: context, ownerRole: true)
            _ = try await WebForm.read(request, context: context)
            try await registry.models.deleteModel(model)
            return redirect("/dashboard")
        }
    }

    private func readable(_ context: RegistryContext) async throws -> ModelRecord {
        try await registry.readable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"), context: context)
    }

    /// Only those who may change the model see its settings; to anyone else it is a 404.
    private func manageable(_ context: RegistryContext) async throws -> ModelRecord {
        do {
            return try await registry.manageable(owner: try context.parameters.require("owner"), name: try context.parameters.require("name"),
                                                 context: context, ownerRole: false)
        } catch let error as RegistryError where error.status == 403 {
            throw RegistryError(404, error.message)
        }
    }

    /// `/{owner}`: a user's or organization's models that the visitor may see (private ones only
    /// to members); 404 for a name that is no account.
    private func ownerPage(_ context: RegistryContext) async throws -> Response {
        let name = try context.parameters.require("owner")
        guard let account = try await registry.accounts.account(named: name) else { throw RegistryError(404, "no account \(name)") }
        let runs = try await predictions.store.runCounts()
        let models = try await registry.models.list(viewer: context.principal, owner: account.username, publicOnly: false, after: nil, limit: 200)
        let cards: [[String: Any]] = models.map { model in
            ["repository": model.repository, "description": model.description ?? "", "runs": Self.runs(runs[model.id] ?? 0),
             "initial": String(model.name.prefix(1)).uppercased(), "private": model.visibility == "private"]
        }
        return pages.page("owner", title: account.username, context: context,
                          ["owner": account.username, "cards": cards, "organization": account.kind == .organization])
    }

    /// Public models with a version and an example, newest first; `q` searches names and descriptions.
    private func explore(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let query = request.uri.queryParameters["q"].map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        let runs = try await predictions.store.runCounts()
        var cards: [[String: Any]] = []
        for model in try await registry.models.list(viewer: nil, search: query, publicOnly: true, after: nil, limit: 200) {
            guard try await !registry.models.versions(of: model).isEmpty else { continue }
            let examples = try await predictions.store.examples(modelID: model.id)
            guard let first = examples.first else { continue }
            var card: [String: Any] = ["repository": model.repository, "description": model.description ?? "", "runs": Self.runs(runs[model.id] ?? 0),
                                       "initial": String(model.name.prefix(1)).uppercased()]
            if let cover = examples.lazy.compactMap({ PredictionView.image(in: $0, registry: registry) }).first ?? PredictionView.image(in: first, registry: registry) {
                card["cover"] = cover
            }
            cards.append(card)
        }
        return pages.page("explore", title: query.isEmpty ? "Explore" : "Search", context: context, ["cards": cards, "query": query])
    }

    /// The model page; after a refused run, the form again with the values sent and the
    /// server's messages beside their fields (status 422).
    func modelPage(_ model: ModelRecord, context: RegistryContext, values: [String: String] = [:], errors: [String: String] = [:],
                   formError: String? = nil) async throws -> Response {
        let versions = try await registry.models.versions(of: model)
        var data: [String: Any] = [
            "owner": model.owner, "name": model.name, "repository": model.repository, "visibility": model.visibility,
            "description": model.description ?? "", "baseURL": registry.baseURL,
            "isOwner": context.principal?.actsFor(model.ownerID) ?? false,
            "runs": Self.runs(try await predictions.store.runCount(modelID: model.id)),
            "versions": versions.map { ["id": $0.id, "createdAt": $0.createdAt] },
        ]
        if let readme = model.readme, !readme.isEmpty { data["readme"] = Markdown.html(readme) }
        // No badge at all rather than an empty one.
        if let license = model.license?.trimmingCharacters(in: .whitespaces), !license.isEmpty { data["license"] = license }
        if let formError { data["formError"] = formError }
        if let latest = versions.first {
            let spec = try await predictions.spec(of: model, version: latest)
            data["version"] = latest.id
            data["fields"] = FormFields.fields(spec, values: values, errors: errors)
            data["exampleInput"] = Self.exampleInput(spec)
            data["examples"] = try await predictions.store.examples(modelID: model.id).map { example -> [String: Any] in
                var item: [String: Any] = ["id": example.id, "summary": "Example \(example.id.prefix(8))"]
                if let image = PredictionView.image(in: example, registry: registry) { item["image"] = image }
                return item
            }
        }
        return pages.page("model", title: model.repository, context: context, status: errors.isEmpty && formError == nil ? .ok : .unprocessableContent, data)
    }

    /// Creates a web prediction from the run form and shows it; a 422 renders the form again.
    private func run(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let model = try await readable(context)
        let session = try signedIn(context)
        let form = try await WebForm.readWithFiles(request, context: context, scratch: registry.scratch.appendingPathComponent("forms"))
        defer { form.discardFiles() }
        let versions = try await registry.models.versions(of: model)
        guard let version = versions.first(where: { $0.id == form["version"] }) ?? versions.first else {
            throw RegistryError(404, "\(model.repository) has no versions yet")
        }
        let spec = try await predictions.spec(of: model, version: version)
        let user = session.principal.user
        do {
            let input = try await FormFields.input(form, spec: spec) { file in
                try await FileRoutes.store(file: file.file, size: file.size, name: file.filename.isEmpty ? "upload" : file.filename,
                                           contentType: file.contentType, owner: user.id, registry: registry)
            }
            let record = try await predictions.submit(model: model, version: version, principal: session.principal, input: input, source: "web",
                                                      accountID: session.acting.id).persisted()
            return redirect("/p/\(record.id)")
        } catch let error as InputErrors {
            var errors: [String: String] = [:]
            for field in error.fields { errors[field.field, default: ""] += (errors[field.field] == nil ? "" : "; ") + field.message }
            let unknown = error.fields.filter { name in !spec.inputs.contains { $0.name == name.field } }
            return try await modelPage(model, context: context, values: form.fields, errors: errors,
                                       formError: unknown.isEmpty ? "Some inputs need fixing." : unknown.map(\.description).joined(separator: "; "))
        }
    }

    static func runs(_ count: Int) -> String { count == 1 ? "1 run" : "\(count) runs" }

    /// The input for the API snippets: defaults, and a placeholder for each required input.
    static func exampleInput(_ spec: ModelSpec) -> String {
        var input: [String: JSONValue] = [:]
        for field in spec.inputs where field.type != .secret {
            if let value = field.default, value != .null { input[field.name] = value; continue }
            guard field.isRequired else { continue }
            switch field.type {
            case .integer: input[field.name] = .int(field.minimum.flatMap(\.exactInteger) ?? 1)
            case .number: input[field.name] = .number(field.minimum ?? 1)
            case .boolean: input[field.name] = .bool(true)
            case .file: input[field.name] = .string("https://example.com/input")
            default: input[field.name] = field.choices?.first ?? .string("...")
            }
        }
        return String(decoding: (try? JSON.canonical(input)) ?? Data("{}".utf8), as: UTF8.self)
    }
}
