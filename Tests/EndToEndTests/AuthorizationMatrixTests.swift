import Foundation
import LatheArchive
import LatheSpec
import LatheTestSupport
import Testing

@Suite("authorization matrix", .serialized)
struct AuthorizationMatrixTests {
    @Test("anonymous, another user, an org member and the owner against every endpoint, private and public")
    func matrix() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let alice = try server.user("alice"), bob = try server.user("bob"), carol = try server.user("carol")
        try CLI.run(["admin", "org", "create", "acme", "--owner", "alice", "--data", server.data.path])
        #expect(try server.curl("PUT", "/v1/organizations/acme/members/carol", token: alice, body: #"{"role":"member"}"#).0 == 200)
        let home = try TestSupport.makeProject([:])
        let privatePush = try decode(try lathe(["push", TestSupport.sample("hello").path, "acme/secret", "--json"], home: home, registry: server, token: alice))
        let publicPush = try decode(try lathe(["push", TestSupport.sample("hello").path, "alice/open", "--public", "--json"], home: home, registry: server, token: alice))
        let version = try #require(privatePush["version"]?.stringValue)
        #expect(publicPush["version"]?.stringValue == version)
        let manifest = try #require(privatePush["manifest"]?.stringValue)
        let image = try LocalStore(root: home.appendingPathComponent("store")).resolve("samples/hello")
        let blob = image.manifest.layers[0].digest.description

        enum Who: String, CaseIterable { case anonymous, bob, carol, alice }
        let tokens: [Who: String?] = [.anonymous: nil, .bob: bob, .carol: carol, .alice: alice]
        func check(_ method: String, _ path: String, body: String? = nil, expect: [Who: Int]) throws {
            for who in Who.allCases {
                let (status, text) = try server.curl(method, path, token: tokens[who]!, body: body)
                #expect(status == expect[who], "\(who.rawValue) \(method) \(path) → \(status) \(text.prefix(200))")
            }
        }
        let readPrivate: [Who: Int] = [.anonymous: 404, .bob: 404, .carol: 200, .alice: 200]
        let readPublic: [Who: Int] = [.anonymous: 200, .bob: 200, .carol: 200, .alice: 200]
        for (model, expect) in [("acme/secret", readPrivate), ("alice/open", readPublic)] {
            try check("GET", "/v1/models/\(model)", expect: expect)
            try check("GET", "/v1/models/\(model)/versions", expect: expect)
            try check("GET", "/v1/models/\(model)/versions/\(version)", expect: expect)
            try check("GET", "/v2/\(model)/tags/list", expect: expect)
            try check("GET", "/v2/\(model)/manifests/latest", expect: expect)
            try check("GET", "/v2/\(model)/manifests/\(manifest)", expect: expect)
            try check("HEAD", "/v2/\(model)/manifests/latest", expect: expect)
            // With blobs in S3 an allowed GET is a 307 to a presigned URL; a refused one is still 404.
            try check("GET", "/v2/\(model)/blobs/\(blob)", expect: TestDatabase.s3 == nil ? expect : expect.mapValues { $0 == 200 ? 307 : $0 })
            try check("HEAD", "/v2/\(model)/blobs/\(blob)", expect: expect)
        }
        // Writes: anonymous must authenticate; outsiders are denied any name in a namespace they
        // may not write to, whether a private model is there or not (so the answer reveals
        // nothing); members write their organization's models only.
        try check("POST", "/v2/acme/secret/blobs/uploads/", expect: [.anonymous: 401, .bob: 403, .carol: 202, .alice: 202])
        try check("POST", "/v2/acme/no-such-model/blobs/uploads/", expect: [.anonymous: 401, .bob: 403, .carol: 202, .alice: 202])
        try check("POST", "/v2/alice/open/blobs/uploads/", expect: [.anonymous: 401, .bob: 403, .carol: 403, .alice: 202])
        try check("PATCH", "/v1/models/acme/secret", body: #"{"description":"x"}"#, expect: [.anonymous: 404, .bob: 404, .carol: 200, .alice: 200])
        try check("PATCH", "/v1/models/alice/open", body: #"{"description":"x"}"#, expect: [.anonymous: 401, .bob: 403, .carol: 403, .alice: 200])
        try check("PUT", "/v1/organizations/acme/members/bob", body: #"{"role":"member"}"#, expect: [.anonymous: 401, .bob: 404, .carol: 403, .alice: 200])
        // bob is a member by now (the line above), but not an owner.
        try check("DELETE", "/v1/organizations/acme/members/bob", expect: [.anonymous: 401, .bob: 403, .carol: 403, .alice: 204])
        // Listing and search show the private model to those who may see it, and no one else.
        for who in Who.allCases {
            let listed = try server.curl("GET", "/v1/models", token: tokens[who]!).1
            #expect(listed.contains("\"open\"") && !listed.contains("secret"), "GET /v1/models lists public models only")
            let found = try server.curl("QUERY", "/v1/models", token: tokens[who]!, body: "secret").1
            #expect(found.contains("\"secret\"") == (who == .carol || who == .alice), "\(who.rawValue) QUERY /v1/models")
        }
        // Deleting: a member may not delete the organization's model, its owner may.
        try check("DELETE", "/v2/alice/open/manifests/\(manifest)", expect: [.anonymous: 401, .bob: 403, .carol: 403, .alice: 202])
        #expect(try server.curl("DELETE", "/v1/models/acme/secret", token: bob).0 == 404)
        #expect(try server.curl("DELETE", "/v1/models/acme/secret", token: carol).0 == 403)
        #expect(try server.curl("DELETE", "/v1/models/acme/secret", token: alice).0 == 204)
        #expect(try server.curl("GET", "/v1/models/acme/secret", token: alice).0 == 404)
    }
}
