import AsyncHTTPClient
import Foundation
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat

extension RegistryClient {
    /// Pulls `repository` at `reference` (a tag, `sha256:` manifest digest, or a version id) into
    /// the local store, verifying every digest (and the code layer's uncompressed digest), and tags
    /// it `repository:tag`. Returns the stored image.
    public func pull(repository: String, reference: String, into store: LocalStore, tag: String) async throws -> LocalStore.Image {
        var manifestReference = reference
        if reference.count == 64, reference.allSatisfy(\.isHexDigit) {
            manifestReference = try await manifestDigest(repository: repository, version: reference)
        }
        let reply = try await send(.GET, "/v2/\(repository)/manifests/\(manifestReference)",
                                   headers: [("Accept", MediaType.imageManifest)], expect: [200], limit: 4 << 20)
        let digest = Digest.of(reply.body)
        if manifestReference.hasPrefix("sha256:"), digest.description != manifestReference {
            throw Failure(method: "GET", url: url("/v2/\(repository)/manifests/\(manifestReference)"), status: 200,
                          message: "the manifest has digest \(digest), not \(manifestReference)")
        }
        let manifest = try JSONDecoder().decode(Manifest.self, from: reply.body)
        guard manifest.artifactType == MediaType.artifact || manifest.config.mediaType == MediaType.config else {
            throw Failure(method: "GET", url: url("/v2/\(repository)/manifests/\(manifestReference)"), status: 200,
                          message: "\(repository):\(reference) is not a Lathe model (\(manifest.artifactType ?? manifest.config.mediaType))")
        }
        for descriptor in [manifest.config] + manifest.layers where !store.hasBlob(descriptor.digest) {
            try await download(repository: repository, descriptor: descriptor, into: store)
        }
        let config = try JSONDecoder().decode(ModelConfig.self, from: store.readBlob(manifest.config.digest))
        for (layer, descriptor) in zip(config.layers, manifest.layers) where descriptor.mediaType == MediaType.codeLayer {
            let (actual, _) = try GzipDigest.uncompressed(store.blobURL(descriptor.digest))
            guard actual == layer.digest else {
                throw Failure(method: "GET", url: url("/v2/\(repository)/blobs/\(descriptor.digest)"), status: 200,
                              message: "the code layer inflates to \(actual), but the config says \(layer.digest)")
            }
        }
        let stored = try store.writeBlob(reply.body, mediaType: manifest.mediaType)
        try store.tag(stored, as: "\(repository):\(tag)")
        return try store.resolve("\(repository):\(tag)")
    }

    /// The manifest digest of a version id, from `/v1/models/{o}/{n}/versions/{id}`.
    private func manifestDigest(repository: String, version: String) async throws -> String {
        // The registry tags nothing by version id; the tags' manifests are searched for it.
        let tags = try await send(.GET, "/v2/\(repository)/tags/list", expect: [200])
        let names = (try JSONDecoder().decode(JSONValue.self, from: tags.body)["tags"]?.arrayValue ?? []).compactMap(\.stringValue)
        for tag in names {
            let reply = try await send(.GET, "/v2/\(repository)/manifests/\(tag)", headers: [("Accept", MediaType.imageManifest)], expect: [200])
            if let manifest = try? JSONDecoder().decode(Manifest.self, from: reply.body), manifest.config.digest.hex == version {
                return Digest.of(reply.body).description
            }
        }
        throw Failure(method: "GET", url: url("/v2/\(repository)/tags/list"), status: 404, message: "no tag of \(repository) carries version \(version)")
    }

    /// Streams a blob to a temporary file in the store, hashing as it goes; kept only if it matches.
    private func download(repository: String, descriptor: Descriptor, into store: LocalStore) async throws {
        var request = HTTPClientRequest(url: url("/v2/\(repository)/blobs/\(descriptor.digest)"))
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        var response = try await http.execute(request, timeout: .seconds(3600))
        if [301, 302, 303, 307, 308].contains(response.status.code), let location = response.headers.first(name: "Location") {
            // Object storage serves the blob from a presigned URL: followed once, without the
            // registry's token (it is for the registry only, and S3 refuses a second credential).
            request = HTTPClientRequest(url: url(location))
            do {
                response = try await http.execute(request, timeout: .seconds(3600))
            } catch {
                let host = URL(string: request.url).map { "\($0.host ?? "?")\($0.port.map { ":\($0)" } ?? "")" } ?? "?"
                throw Failure(method: "GET", url: "/v2/\(repository)/blobs/\(descriptor.digest)", status: 307,
                              message: "the registry sent the download to its object store at \(host), which this machine cannot reach (\(error)); "
                                + "let this machine reach it, or run the registry with --blob-redirect false to stream blobs through it")
            }
        }
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 1 << 20)
            throw Failure(method: "GET", url: request.url, status: Int(response.status.code),
                          message: Self.message(Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: body))))
        }
        let temporary = try store.temporaryURL()
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(method: "GET", url: request.url, status: 200, message: "cannot write \(temporary.path)") }
        var hasher = DigestWriter()
        do {
            for try await buffer in response.body {
                try buffer.withUnsafeReadableBytes { bytes in
                    guard write(fd, bytes.baseAddress, bytes.count) == bytes.count else { throw CocoaError(.fileWriteUnknown) }
                    hasher.update(bytes)
                }
            }
            close(fd)
        } catch {
            close(fd)
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        guard hasher.finalize() == descriptor.digest, hasher.count == descriptor.size else {
            try? FileManager.default.removeItem(at: temporary)
            throw Failure(method: "GET", url: request.url, status: 200, message: "downloaded bytes do not match \(descriptor.digest)")
        }
        try store.moveIntoPlace(temporary, digest: descriptor.digest)
    }
}
