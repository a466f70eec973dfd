import Foundation
import Hummingbird
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat
import LatheStore
import LatheCore

/// `/v2/…`: the OCI distribution API over the registry's models (`/v2/<owner>/<name>/…`).
struct DistributionRoutes {
    let registry: Registry
    /// Names this replica in upload writer leases (freed when it restarts).
    let replica: String

    init(registry: Registry) {
        self.registry = registry
        self.replica = registry.replicaID
    }
    static let maxManifestBytes = 4 << 20
    /// Layers a manifest may list (a code layer and one per weights file).
    static let maxLayers = 1000
    static let maxConfigBytes = 4 << 20

    func add(to router: Router<RegistryContext>) {
        let v2 = router.group("v2").add(middleware: OCIErrorMiddleware())
        v2.get("") { _, context -> Response in
            if context.principal == nil {
                return RegistryError(401, "authentication required", code: "UNAUTHORIZED").ociResponse()
            }
            return Self.json("{}")
        }
        v2.on(":owner/:name/blobs/:digest", method: .head) { request, context in try await blob(request, context, head: true) }
        v2.get(":owner/:name/blobs/:digest") { request, context in try await blob(request, context, head: false) }
        v2.post(":owner/:name/blobs/uploads") { request, context in try await startUpload(request, context) }
        v2.get(":owner/:name/blobs/uploads/:id") { request, context in try await uploadStatus(request, context) }
        v2.patch(":owner/:name/blobs/uploads/:id") { request, context in try await patchUpload(request, context) }
        v2.put(":owner/:name/blobs/uploads/:id") { request, context in try await finishUpload(request, context) }
        v2.delete(":owner/:name/blobs/uploads/:id") { request, context in try await cancelUpload(request, context) }
        v2.on(":owner/:name/manifests/:reference", method: .head) { request, context in try await getManifest(request, context, head: true) }
        v2.get(":owner/:name/manifests/:reference") { request, context in try await getManifest(request, context, head: false) }
        v2.put(":owner/:name/manifests/:reference") { request, context in try await putManifest(request, context) }
        v2.delete(":owner/:name/manifests/:reference") { request, context in try await deleteManifest(request, context) }
        v2.get(":owner/:name/tags/list") { request, context in try await tags(request, context) }
    }

    // MARK: - Helpers

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private func names(_ context: RegistryContext) throws -> (String, String) {
        let owner = try context.parameters.require("owner"), name = try context.parameters.require("name")
        guard AccountStore.isValidName(owner), AccountStore.isValidName(name) else {
            throw RegistryError(400, "\(owner)/\(name) is not a valid repository name", code: "NAME_INVALID")
        }
        return (owner, name)
    }

    /// `Lathe-Upload-Digest: sha256:…` on `POST …/blobs/uploads/`: the digest the finished upload
    /// will be (echoed when honoured).
    static let uploadDigestHeader = HTTPFields.Key("Lathe-Upload-Digest")!

    private func digest(_ text: String) throws -> Digest {
        guard let digest = Digest(parsing: text), text.hasPrefix("sha256:") else {
            throw RegistryError(400, "\"\(text)\" is not a sha256 digest", code: "DIGEST_INVALID")
        }
        return digest
    }

    private func uploadLocation(_ owner: String, _ name: String, _ id: String) -> String {
        "/v2/\(owner)/\(name)/blobs/uploads/\(id)"
    }

    // MARK: - Blobs

    private func blob(_ request: Request, _ context: RegistryContext, head: Bool) async throws -> Response {
        let (owner, name) = try names(context)
        // A malformed digest is the caller's mistake whatever the repository: 400 first.
        let digest = try digest(try context.parameters.require("digest"))
        let model = try await registry.readable(owner: owner, name: name, context: context)
        guard let size = try await registry.models.blob(digest.description, repository: model.repository),
              try await registry.blobs.size(of: .blob(digest)) != nil else {
            throw RegistryError(404, "blob \(digest) is not in \(model.repository)", code: "BLOB_UNKNOWN")
        }
        // A pusher asks before skipping an upload: garbage collection must spare what it was told exists.
        if head { try await registry.models.touchBlob(digest.description) }
        let headers: HTTPFields = [.contentType: "application/octet-stream", .init("Docker-Content-Digest")!: digest.description,
                                   .acceptRanges: "bytes"]
        var range: ClosedRange<Int64>? = nil
        if let header = request.headers[.range] {
            guard let parsed = RequestValues.byteRange(header, size: size) else {
                // A syntactically valid range outside the blob is unsatisfiable; anything else is ignored (RFC 9110).
                if header.hasPrefix("bytes="), !header.contains(",") {
                    throw RegistryError(416, "Range \(header.prefix(64)) is outside the blob's \(size) bytes; ask for bytes=START-END within it",
                                        code: "RANGE_INVALID")
                }
                return try await blobResponse(digest, size: size, range: nil, headers: headers, head: head, context: context)
            }
            range = parsed
        }
        return try await blobResponse(digest, size: size, range: range, headers: headers, head: head, context: context)
    }

    private func blobResponse(_ digest: Digest, size: Int64, range: ClosedRange<Int64>?, headers: HTTPFields, head: Bool,
                              context: RegistryContext) async throws -> Response {
        var headers = headers
        if let range { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(size)" }
        let length = range.map { $0.upperBound - $0.lowerBound + 1 } ?? size
        headers[.contentLength] = String(length)
        let status: HTTPResponse.Status = range == nil ? .ok : .partialContent
        if head || size == 0 { return Response(status: status, headers: headers) }
        // Object storage serves the bytes itself (a presigned URL; clients send Range again there).
        if registry.blobRedirect, let url = try await registry.blobs.redirectURL(for: .blob(digest), expires: 900, downloadName: nil) {
            return Response(status: .temporaryRedirect, headers: [.location: url.absoluteString, .init("Docker-Content-Digest")!: digest.description])
        }
        // Served as the digest only once its bytes were checked to be that digest's.
        try await registry.blobCache.verifyLocal(digest)
        return Response(status: status, headers: headers, body: registry.blobs.responseBody(.blob(digest), range: range))
    }

    // MARK: - Uploads

    private func startUpload(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name) = try names(context)
        let (_, _) = try await registry.writable(owner: owner, name: name, context: context)
        let repository = "\(owner)/\(name)"
        let query = request.uri.queryParameters
        if let mount = query["mount"].map(String.init) {
            let digest = try digest(mount)
            // Mount only from a repository the caller can read (anonymous `from` is not searched).
            if let from = query["from"].map(String.init), let slash = from.firstIndex(of: "/"),
               let source = try? await registry.readable(owner: String(from[..<slash]), name: String(from[from.index(after: slash)...]), context: context),
               try await registry.models.blob(digest.description, repository: source.repository) != nil {
                try await registry.models.linkBlob(digest.description, repository: repository)
                try await registry.models.touchBlob(digest.description)
                return Response(status: .created, headers: [.location: "/v2/\(repository)/blobs/\(digest)",
                                                            .init("Docker-Content-Digest")!: digest.description])
            }
        }
        // Lathe's extension: a client that knows the digest names it at the start, so an S3
        // store assembles the parts at the blob's own key (docs/api.md). Ignored on a single POST.
        let named = try request.headers[Self.uploadDigestHeader].map { try digest($0) }
        let id = UUID().uuidString.lowercased()
        try await registry.blobs.createUpload(id, digest: query["digest"] == nil ? named : nil)
        try await registry.models.createUpload(id: id, repository: repository, userID: context.principal!.user.id)
        if let expected = query["digest"].map(String.init) {
            // Single POST with the whole blob.
            let digest = try digest(expected)
            return try await writing(id) {
                _ = try await append(id, request, at: 0, owner: owner)
                return try await complete(id, digest: digest, repository: repository)
            }
        }
        var headers: HTTPFields = [
            .location: uploadLocation(owner, name, id), .range: "0-0", .init("Docker-Upload-UUID")!: id,
            .init("OCI-Chunk-Min-Length")!: String(1 << 20),
        ]
        if let named { headers[Self.uploadDigestHeader] = named.description }
        return Response(status: .accepted, headers: headers)
    }

    private func upload(_ context: RegistryContext) async throws -> (String, String, String) {
        let (owner, name) = try names(context)
        _ = try await registry.writable(owner: owner, name: name, context: context)
        let id = try context.parameters.require("id")
        guard try await registry.models.uploadExists(id: id, repository: "\(owner)/\(name)"), try await registry.blobs.uploadSize(id) != nil else {
            throw RegistryError(404, "upload \(id) is unknown or finished", code: "BLOB_UPLOAD_UNKNOWN")
        }
        return (owner, name, id)
    }

    private func rangeHeader(_ size: Int64) -> String { size == 0 ? "0-0" : "0-\(size - 1)" }

    private func uploadStatus(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name, id) = try await upload(context)
        let size = try await registry.blobs.uploadSize(id) ?? 0
        return Response(status: .noContent, headers: [.location: uploadLocation(owner, name, id), .range: rangeHeader(size),
                                                      .init("Docker-Upload-UUID")!: id])
    }

    /// Runs `body` as the upload's one writer. Two requests writing to one upload at once would
    /// each append at the same offset and leave a digest that is not the file's, so the second
    /// is refused (409) while the first holds the lease, on whatever replica it runs.
    private func writing(_ id: String, _ body: () async throws -> Response) async throws -> Response {
        let writer = "\(replica):\(UUID().uuidString)"
        guard try await registry.models.claimUploadWriter(id: id, writer: writer, until: Date().addingTimeInterval(Self.writerLease)) else {
            throw RegistryError(409, "upload \(id) is being written by another request; wait for it to finish, then ask GET for its Range and resume",
                                code: "BLOB_UPLOAD_INVALID")
        }
        // Renewed while the body streams; a replica that dies mid-request lets the lease lapse
        // within `writerLease`, and the client's retry (which waits for it) resumes the upload.
        let keeper = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(Self.writerLease / 3 * 1_000_000_000))
                if Task.isCancelled { break }
                try? await registry.models.renewUploadWriter(id: id, writer: writer, until: Date().addingTimeInterval(Self.writerLease))
            }
        }
        defer { keeper.cancel() }
        do {
            let response = try await body()
            try? await registry.models.releaseUploadWriter(id: id, writer: writer)
            return response
        } catch {
            try? await registry.models.releaseUploadWriter(id: id, writer: writer)
            throw error
        }
    }

    /// How long an upload's writer lease lasts without renewal (renewed every third of it while
    /// the request runs): the longest a request that died leaves its upload locked.
    static let writerLease: TimeInterval = 15

    /// Appends a request body to an upload holding `uploaded` bytes, within the operator's
    /// largest blob and what is left of the owner's storage quota (413 naming whichever ran out).
    private func append(_ id: String, _ request: Request, at uploaded: Int64, owner: String) async throws -> Int64 {
        let used = try await registry.models.storageUsed(byOwner: owner)
        let quotaLeft = registry.storageQuota - used - uploaded
        let blobLeft = registry.maxBlobSize - uploaded
        let refusal = quotaLeft < blobLeft
            ? RegistryError(413, "\(owner)'s blobs take \(used >> 20) MB of a \(registry.storageQuota >> 20) MB quota; delete versions or ask the operator for more",
                            code: "DENIED")
            : RegistryError(413, "a blob may be at most \(registry.maxBlobSize >> 20) MB on this registry (--max-blob-size)", code: "SIZE_INVALID")
        guard min(quotaLeft, blobLeft) >= 0 else { throw refusal }
        do {
            return try await registry.blobs.append(id, body: request.body, at: uploaded, limit: min(quotaLeft, blobLeft))
        } catch let error as StoreError where error.kind == .tooLarge {
            throw refusal
        }
    }

    private func patchUpload(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name, id) = try await upload(context)
        return try await writing(id) { try await patch(request, owner: owner, name: name, id: id) }
    }

    private func patch(_ request: Request, owner: String, name: String, id: String) async throws -> Response {
        let size = try await registry.blobs.uploadSize(id) ?? 0
        if let header = request.headers[.contentRange] {
            // Chunks must arrive in order: the first byte must be the next one expected.
            guard let bounds = RequestValues.contentRange(header) else {
                throw RegistryError(400, "Content-Range must be START-END (the chunk's first and last byte, like 0-1048575)", code: "BLOB_UPLOAD_INVALID")
            }
            guard bounds.start == size else {
                return Response(status: .rangeNotSatisfiable, headers: [.location: uploadLocation(owner, name, id), .range: rangeHeader(size)],
                                body: .init(byteBuffer: ByteBuffer(data: (try? JSONEncoder().encode(OCIErrorBody(errors: [.init(
                                    code: "BLOB_UPLOAD_INVALID", message: "chunk starts at \(bounds.start) but \(size) bytes were received so far")]))) ?? Data())))
            }
        }
        let received = try await append(id, request, at: size, owner: owner)
        return Response(status: .accepted, headers: [.location: uploadLocation(owner, name, id), .range: rangeHeader(received),
                                                     .init("Docker-Upload-UUID")!: id])
    }

    private func finishUpload(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name, id) = try await upload(context)
        guard let expected = request.uri.queryParameters["digest"].map(String.init) else {
            throw RegistryError(400, "PUT needs ?digest=sha256:…", code: "DIGEST_INVALID")
        }
        let digest = try digest(expected)
        return try await writing(id) {
            let size = try await registry.blobs.uploadSize(id) ?? 0
            _ = try await append(id, request, at: size, owner: owner)
            return try await complete(id, digest: digest, repository: "\(owner)/\(name)")
        }
    }

    private func complete(_ id: String, digest: Digest, repository: String) async throws -> Response {
        let size: Int64
        do {
            size = try await registry.blobs.finishUpload(id, as: digest)
        } catch {
            try? await registry.blobs.discardUpload(id)
            try await registry.models.deleteUpload(id: id)
            throw error
        }
        try await registry.models.deleteUpload(id: id)
        try await registry.models.addBlob(digest.description, size: size, repository: repository)
        return Response(status: .created, headers: [.location: "/v2/\(repository)/blobs/\(digest)",
                                                    .init("Docker-Content-Digest")!: digest.description])
    }

    private func cancelUpload(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (_, _, id) = try await upload(context)
        return try await writing(id) {
            try await registry.blobs.discardUpload(id)
            try await registry.models.deleteUpload(id: id)
            return Response(status: .noContent)
        }
    }

    // MARK: - Manifests

    private func resolveManifest(_ model: ModelRecord, _ reference: String) async throws -> ModelStore.ManifestRow {
        let digest: String
        if reference.hasPrefix("sha256:") {
            digest = try self.digest(reference).description
        } else {
            guard ImageReference.isValidTag(reference) else { throw RegistryError(400, "\"\(reference)\" is not a valid tag", code: "TAG_INVALID") }
            guard let tagged = try await registry.models.tag(repository: model.repository, tag: reference) else {
                throw RegistryError(404, "tag \(reference) does not exist in \(model.repository)", code: "MANIFEST_UNKNOWN")
            }
            digest = tagged
        }
        guard let row = try await registry.models.manifest(repository: model.repository, digest: digest) else {
            throw RegistryError(404, "manifest \(reference) does not exist in \(model.repository)", code: "MANIFEST_UNKNOWN")
        }
        return row
    }

    private func getManifest(_ request: Request, _ context: RegistryContext, head: Bool) async throws -> Response {
        let (owner, name) = try names(context)
        let model = try await registry.readable(owner: owner, name: name, context: context)
        let row = try await resolveManifest(model, try context.parameters.require("reference"))
        let headers: HTTPFields = [.contentType: row.mediaType, .contentLength: String(row.size),
                                   .init("Docker-Content-Digest")!: row.digest, .eTag: "\"\(row.digest)\""]
        if head { return Response(status: .ok, headers: headers) }
        let data = try await registry.blobs.data(.blob(try digest(row.digest)))
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    private func putManifest(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name) = try names(context)
        let (account, existing) = try await registry.writable(owner: owner, name: name, context: context)
        var model = existing
        let reference = try context.parameters.require("reference")
        let repository = "\(owner)/\(name)"
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.maxManifestBytes)
        } catch {
            throw RegistryError(413, "manifest is larger than \(Self.maxManifestBytes) bytes", code: "SIZE_INVALID")
        }
        let data = Data(buffer: buffer)
        let digest = Digest.of(data)
        if reference.hasPrefix("sha256:"), try self.digest(reference) != digest {
            throw RegistryError(400, "manifest body has digest \(digest), not \(reference)", code: "DIGEST_INVALID")
        }
        if !reference.hasPrefix("sha256:"), !ImageReference.isValidTag(reference) {
            throw RegistryError(400, "\"\(reference)\" is not a valid tag", code: "TAG_INVALID")
        }
        guard let manifest = try? JSONDecoder().decode(Manifest.self, from: data), manifest.schemaVersion == 2 else {
            throw RegistryError(400, "the body is not an OCI image manifest", code: "MANIFEST_INVALID")
        }
        guard manifest.mediaType == MediaType.imageManifest,
              manifest.artifactType == MediaType.artifact || manifest.config.mediaType == MediaType.config else {
            throw RegistryError(400, "this registry stores Lathe model versions only (artifactType \(MediaType.artifact)); got \(manifest.artifactType ?? manifest.config.mediaType)",
                                code: "MANIFEST_INVALID")
        }
        let config = try await verify(manifest, repository: repository)

        // Everything checked: now the version becomes visible, in one final insert.
        if model == nil {
            model = try await registry.models.createModel(owner: account, name: name, visibility: "private",
                                                          description: config.spec.description, license: config.spec.license)
        }
        guard let model else { throw RegistryError(500, "model missing") }
        try await registry.blobs.storeBlob(data)
        try await registry.models.addManifest(repository: repository, digest: digest.description, mediaType: manifest.mediaType, size: data.count)
        if !reference.hasPrefix("sha256:") {
            try await registry.models.setTag(repository: repository, tag: reference, digest: digest.description)
        }
        let version = manifest.config.digest.hex
        let isNew = try await registry.models.version(of: model, id: version) == nil
        let schema = String(decoding: try JSON.canonical(config.openapiSchema), as: UTF8.self)
        try await registry.models.addVersion(model, id: version, manifestDigest: digest.description, openapiSchema: schema)
        if isNew { try await registry.models.setTag(repository: repository, tag: "latest", digest: digest.description) }
        return Response(status: .created, headers: [.location: "/v2/\(repository)/manifests/\(digest)",
                                                    .init("Docker-Content-Digest")!: digest.description])
    }

    /// Every blob must be in the repository, and the config's uncompressed layer digests must
    /// match what was uploaded (the code layer is inflated and hashed).
    private func verify(_ manifest: Manifest, repository: String) async throws -> ModelConfig {
        // Counted before any database work: a manifest is small, its layers few.
        guard manifest.layers.count <= Self.maxLayers else {
            throw RegistryError(400, "the manifest lists \(manifest.layers.count) layers, more than \(Self.maxLayers); keep weights in fewer, larger files",
                                code: "MANIFEST_INVALID")
        }
        guard manifest.config.size <= Self.maxConfigBytes else {
            throw RegistryError(400, "the config blob is \(manifest.config.size) bytes, more than \(Self.maxConfigBytes)", code: "MANIFEST_INVALID")
        }
        for descriptor in [manifest.config] + manifest.layers {
            // Touched before it is checked: a collection running now either sees it touched
            // and keeps it, or removed it already and the check fails (the client pushes it again).
            try await registry.models.touchBlob(descriptor.digest.description)
            guard let stored = try await registry.models.blob(descriptor.digest.description, repository: repository),
                  try await registry.blobs.size(of: .blob(descriptor.digest)) != nil else {
                throw RegistryError(400, "blob \(descriptor.digest) named by the manifest was not uploaded to \(repository)", code: "MANIFEST_BLOB_UNKNOWN")
            }
            // Limits below trust declared sizes (the code layer's inflation bound): they must be the real ones.
            guard stored == descriptor.size else {
                throw RegistryError(400, "the manifest declares \(descriptor.size) bytes for blob \(descriptor.digest), but it holds \(stored)",
                                    code: "SIZE_INVALID")
            }
        }
        guard let configData = try? await registry.blobs.data(.blob(manifest.config.digest), limit: Self.maxConfigBytes) else {
            throw RegistryError(400, "the config blob is not a Lathe model config", code: "MANIFEST_INVALID")
        }
        var config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: configData)
        } catch let error as DecodingError {
            throw RegistryError(400, "the config blob is not a Lathe model config: \(Self.describe(error)); push a version made by `lathe build`",
                                code: "MANIFEST_INVALID")
        }
        // Only the registry derives configs that run a training (for its own trainings).
        guard config.role == nil, config.trainingOf == nil else {
            throw RegistryError(400, "the config sets role or training_of, which only the registry sets on the configs its trainings run; push a version made by `lathe build`",
                                code: "MANIFEST_INVALID")
        }
        // A config is a stranger's input: its spec passes every check `lathe validate` makes
        // before a version exists, and the schema the registry serves is made here from it.
        do {
            config.spec = try SpecParser.check(config.spec)
        } catch let diagnostics as Diagnostics {
            throw RegistryError(400, "the config's spec is not valid: " + diagnostics.items.prefix(5).map(\.description).joined(separator: "; "),
                                code: "MANIFEST_INVALID")
        }
        config.openapiSchema = OpenAPISchema.document(for: config.spec)
        let refused = registry.requirements.problems(config.requirements)
        guard refused.isEmpty else {
            throw RegistryError(400, refused.joined(separator: "; "), code: "MANIFEST_INVALID")
        }
        guard config.layers.count == manifest.layers.count else {
            throw RegistryError(400, "the config lists \(config.layers.count) layers but the manifest has \(manifest.layers.count)", code: "MANIFEST_INVALID")
        }
        for (layer, descriptor) in zip(config.layers, manifest.layers) {
            let actual: Digest
            if descriptor.mediaType == MediaType.codeLayer {
                // Code is small: a layer that inflates past 100x its size (or 1 GiB) is a bomb.
                let limit = min(max(Int64(64 << 20), descriptor.size.multipliedReportingOverflow(by: 100).partialValue), 1 << 30)
                let inflated: (Digest, Int64)
                do {
                    inflated = try GzipDigest.uncompressed(try await registry.blobCache.file(for: descriptor.digest), maxBytes: limit)
                } catch where "\(error)".contains("inflates to more than") {
                    throw RegistryError(400, "the code layer inflates to more than \(limit >> 20) MiB (over 100 times its compressed size); keep large files in weights:",
                                        code: "MANIFEST_INVALID")
                } catch {
                    throw RegistryError(400, "the code layer is not a valid gzip stream (\(error)); push a layer made by `lathe build`", code: "MANIFEST_INVALID")
                }
                actual = inflated.0
            } else {
                actual = descriptor.digest
            }
            guard actual == layer.digest else {
                throw RegistryError(400, "layer \(layer.path) has uncompressed digest \(actual) but the config says \(layer.digest)", code: "MANIFEST_INVALID")
            }
        }
        return config
    }

    /// Where a config failed to decode and why, in one line (no type names from the decoder).
    static func describe(_ error: DecodingError) -> String {
        let (path, reason): ([any CodingKey], String)
        switch error {
        case .dataCorrupted(let context): (path, reason) = (context.codingPath, context.debugDescription)
        case .keyNotFound(let key, let context): (path, reason) = (context.codingPath + [key], "missing")
        case .typeMismatch(_, let context), .valueNotFound(_, let context): (path, reason) = (context.codingPath, "has the wrong type")
        @unknown default: (path, reason) = ([], "cannot be read")
        }
        let field = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return (field.isEmpty ? "" : "\(field.drop { $0 == "." }) ") + String(reason.prefix(200))
    }

    private func deleteManifest(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name) = try names(context)
        let (_, existing) = try await registry.writable(owner: owner, name: name, context: context)
        guard let model = existing else { throw RegistryError.notFound("model \(owner)/\(name) does not exist") }
        let reference = try context.parameters.require("reference")
        if !reference.hasPrefix("sha256:") {
            _ = try await resolveManifest(model, reference)
            try await registry.models.deleteTag(repository: model.repository, tag: reference)
            return Response(status: .accepted)
        }
        let row = try await resolveManifest(model, reference)
        for version in try await registry.models.versions(of: model) where version.manifestDigest == row.digest {
            try await registry.models.deleteVersion(model, id: version.id)
        }
        try await registry.models.deleteManifest(repository: model.repository, digest: row.digest)
        return Response(status: .accepted)
    }

    private func tags(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let (owner, name) = try names(context)
        let model = try await registry.readable(owner: owner, name: name, context: context)
        let query = request.uri.queryParameters
        let limit = try RequestValues.pageSize(query["n"], name: "n", fallback: 1000, max: 1000)
        let last = query["last"].map(String.init)
        let tags = try await registry.models.tags(repository: model.repository, after: last, limit: limit + 1)
        let page = Array(tags.prefix(limit))
        struct Body: Encodable { var name: String; var tags: [String] }
        var headers: HTTPFields = [.contentType: "application/json"]
        if tags.count > limit, let end = page.last {
            headers[.init("Link")!] = "</v2/\(model.repository)/tags/list?n=\(limit)&last=\(end)>; rel=\"next\""
        }
        let data = try JSONEncoder().encode(Body(name: model.repository, tags: page))
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: data)))
    }
}
