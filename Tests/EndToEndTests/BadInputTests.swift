import Foundation
import LatheArchive
import LatheSpec
import LatheTestSupport
import Testing

/// The OCI error code of a /v2 answer.
func ociCode(_ body: String) -> String? {
    (try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)))?["errors"]?.arrayValue?.first?["code"]?.stringValue
}

@Suite("the registry refuses bad input with the spec's errors and stores nothing", .serialized)
struct BadInputTests {
    @Test("wrong digest, truncated upload, chunk out of order, oversized or dangling manifests, config mismatch, bad names, taken names")
    func refusals() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let scratch = try TestSupport.makeProject(["blob.bin": "hello blob", "half.bin": "hello"])
        let blob = scratch.appendingPathComponent("blob.bin"), half = scratch.appendingPathComponent("half.bin")
        let digest = Digest.of(Data("hello blob".utf8)).description
        func open() throws -> String {
            let result = try TestSupport.run("curl", ["-s", "-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Authorization: Bearer \(token)",
                                                      server.url + "/v2/alice/m/blobs/uploads/"])
            let line = try #require(result.output.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") })
            return String(line.dropFirst("location:".count)).trimmingCharacters(in: .whitespaces)
        }

        // Wrong digest on a monolithic PUT.
        var (status, body) = try server.curl("PUT", try open() + "?digest=sha256:" + String(repeating: "0", count: 64), token: token, bodyFile: blob)
        #expect(status == 400 && ociCode(body) == "DIGEST_INVALID", "\(status) \(body)")
        // A truncated upload: half the bytes, then PUT claiming the whole blob's digest.
        (status, body) = try server.curl("PUT", try open() + "?digest=\(digest)", token: token, bodyFile: half)
        #expect(status == 400 && ociCode(body) == "DIGEST_INVALID")
        #expect(try server.curl("HEAD", "/v2/alice/m/blobs/\(digest)", token: token).0 == 404, "nothing stored")
        // A chunk that does not start where the upload stands.
        let location = try open()
        (status, body) = try server.curl("PATCH", location, token: token, bodyFile: blob, headers: ["Content-Range: 5-14"])
        #expect(status == 416 && ociCode(body) == "BLOB_UPLOAD_INVALID")
        // An invalid digest string.
        (status, body) = try server.curl("HEAD", "/v2/alice/m/blobs/sha256:baddigeststring", token: token)
        #expect(status == 400, "an invalid digest is a bad request")

        // Manifests: too large, naming a missing blob, config digests that do not match.
        let big = scratch.appendingPathComponent("big.json")
        try Data(repeating: 0x20, count: 5 << 20).write(to: big)
        (status, body) = try server.curl("PUT", "/v2/alice/m/manifests/v1", token: token, bodyFile: big,
                                         headers: ["Content-Type: application/vnd.oci.image.manifest.v1+json"])
        #expect(status == 413 && ociCode(body) == "SIZE_INVALID")
        let dangling = """
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.lathe.model.v1",
         "config":{"mediaType":"application/vnd.lathe.model.config.v1+json","digest":"\(digest)","size":10},"layers":[]}
        """
        (status, body) = try server.curl("PUT", "/v2/alice/m/manifests/v1", token: token, body: dangling)
        #expect(status == 400 && ociCode(body) == "MANIFEST_BLOB_UNKNOWN", "\(body)")

        // A real push, then a manifest whose config claims a different code layer digest.
        let home = try TestSupport.makeProject([:])
        #expect(try lathe(["push", TestSupport.sample("hello").path, "alice/hello"], home: home, registry: server, token: token).status == 0)
        let image = try LocalStore(root: home.appendingPathComponent("store")).resolve("samples/hello")
        var config = image.config
        config.layers[0].digest = Digest(hex: String(repeating: "1", count: 64))
        let configData = try JSON.canonical(config)
        let configFile = scratch.appendingPathComponent("config.json")
        try configData.write(to: configFile)
        let configDigest = Digest.of(configData)
        (status, _) = try server.curl("PUT", try open().replacingOccurrences(of: "alice/m", with: "alice/m") + "?digest=\(configDigest)", token: token, bodyFile: configFile)
        #expect(status == 201)
        // The code layer is mounted from alice/hello so that only the config is wrong.
        let code = image.manifest.layers[0].digest
        (status, _) = try server.curl("POST", "/v2/alice/m/blobs/uploads/?mount=\(code)&from=alice/hello", token: token)
        #expect(status == 201)
        var manifest = image.manifest
        manifest.config = Descriptor(mediaType: MediaType.config, digest: configDigest, size: Int64(configData.count))
        (status, body) = try server.curl("PUT", "/v2/alice/m/manifests/v1", token: token, body: String(decoding: try JSON.canonical(manifest), as: UTF8.self))
        #expect(status == 400 && ociCode(body) == "MANIFEST_INVALID" && body.contains("uncompressed digest"), "\(body)")
        #expect(try server.curl("GET", "/v1/models/alice/m", token: token).0 == 404, "no model or version came of it")

        // Names and tags.
        (status, body) = try server.curl("GET", "/v2/Alice/M/tags/list", token: token)
        #expect(status == 400 && ociCode(body) == "NAME_INVALID")
        (status, body) = try server.curl("PUT", "/v2/alice/hello/manifests/bad%20tag", token: token, body: "{}")
        #expect(status == 400 && ociCode(body) == "TAG_INVALID")
        // A model name that is taken, and an invalid one.
        (status, body) = try server.curl("POST", "/v1/models", token: token, body: #"{"owner":"alice","name":"hello","visibility":"public"}"#)
        #expect(status == 409 && body.contains("is taken"))
        (status, _) = try server.curl("POST", "/v1/models", token: token, body: #"{"owner":"alice","name":"Bad Name","visibility":"public"}"#)
        #expect(status == 400)
        // Other artifact types are refused with a clear error.
        let foreign = dangling.replacingOccurrences(of: "application/vnd.lathe.model.v1", with: "application/vnd.example.thing")
            .replacingOccurrences(of: "application/vnd.lathe.model.config.v1+json", with: "application/vnd.example.config")
        (status, body) = try server.curl("PUT", "/v2/alice/m/manifests/v1", token: token, body: foreign)
        #expect(status == 400 && body.contains("Lathe model versions only"))
    }
}
