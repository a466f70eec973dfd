import Foundation
import LatheSpec
import LatheTestSupport
import Testing

/// `lathe …` against a given registry with a token and its own home.
func lathe(_ arguments: [String], home: URL, registry: RegistryServer, token: String?) throws -> ChildProcess.Result {
    var environment = ["LATHE_HOME": home.path, "LATHE_REGISTRY": registry.url]
    if let token { environment["LATHE_TOKEN"] = token }
    return try TestSupport.run(CLI.binary.path, arguments, environment: environment)
}

func decode(_ result: ChildProcess.Result) throws -> [String: JSONValue] {
    guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: result.stdout) else {
        throw CLIFailure(arguments: [], result: result)
    }
    return object
}

@Suite("the registry: push, pull, versions, visibility", .serialized)
struct RegistryTests {
    @Test("push every sample, see its version and schema; re-push uploads nothing; a code change uploads only code and config; pull gives the same id")
    func pushAndPull() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        #expect(try TestSupport.run("python3", [TestSupport.sample("minilm").appendingPathComponent("fetch_weights.py").path]).status == 0)
        for sample in ["hello", "classifier", "image", "streamer", "minilm"] {
            let pushed = try decode(try lathe(["push", TestSupport.sample(sample).path, "alice/\(sample)", "--json"], home: home, registry: server, token: token))
            let version = try #require(pushed["version"]?.stringValue)
            let (status, body) = try server.curl("GET", "/v1/models/alice/\(sample)/versions", token: token)
            #expect(status == 200)
            let versions = try JSONDecoder().decode(JSONValue.self, from: Data(body.utf8))
            #expect(versions["results"]?.arrayValue?.first?["id"] == .string(version))
            #expect(versions["results"]?.arrayValue?.first?["openapi_schema"]?["components"]?["schemas"]?["Input"] != nil)
        }

        // Unchanged: every blob is already there.
        let again = try decode(try lathe(["push", TestSupport.sample("classifier").path, "alice/classifier", "--json"], home: home, registry: server, token: token))
        #expect(again["bytes_uploaded"] == .int(0))
        #expect(again["blobs_skipped"] == .int(3))

        // Only code changes: code layer and config go up, the 72 KB weights do not.
        let copy = try TestSupport.makeProject([:]).appendingPathComponent("classifier")
        try FileManager.default.copyItem(at: TestSupport.sample("classifier"), to: copy)
        try FileHandle(forWritingTo: copy.appendingPathComponent("predict.py")).seekToEnd()
        let handle = try FileHandle(forWritingTo: copy.appendingPathComponent("predict.py"))
        try handle.seekToEnd(); try handle.write(contentsOf: Data("# changed\n".utf8)); try handle.close()
        let changed = try decode(try lathe(["push", copy.path, "alice/classifier", "--json"], home: home, registry: server, token: token))
        #expect(changed["version"] != again["version"])
        #expect(changed["blobs_uploaded"] == .int(2))
        #expect(changed["blobs_skipped"] == .int(1))
        let uploaded = changed["bytes_uploaded"]?.doubleValue ?? 0
        #expect(uploaded > 0 && uploaded < 20_000, "code + config only: \(uploaded) bytes")

        // A new repository on the same registry mounts what the registry already holds.
        let mounted = try decode(try lathe(["push", TestSupport.sample("classifier").path, "alice/classifier-copy", "--json"], home: home, registry: server, token: token))
        #expect(mounted["blobs_mounted"] == .int(3))
        #expect(mounted["bytes_uploaded"] == .int(0))

        // Pull into a fresh home: the same version id, runnable.
        let other = try TestSupport.makeProject([:])
        let pulled = try lathe(["pull", "alice/classifier"], home: other, registry: server, token: token)
        #expect(pulled.status == 0, "\(pulled.stderrText)")
        #expect(pulled.output.trimmingCharacters(in: .whitespacesAndNewlines) == changed["version"]?.stringValue)
        let byVersion = try lathe(["pull", "alice/hello:\(try #require(try decode(try lathe(["push", TestSupport.sample("hello").path, "alice/hello", "--json"], home: home, registry: server, token: token))["version"]?.stringValue))"],
                                  home: other, registry: server, token: token)
        #expect(byVersion.status == 0, "\(byVersion.stderrText)")
        let predicted = try lathe(["predict", "alice/classifier:latest", "-i", "text=a wonderful, friendly place"], home: other, registry: server, token: nil)
        #expect(predicted.output.contains("positive"), "\(predicted.stderrText)")
    }

    @Test("private models are 404 to everyone but their owner and organization members")
    func visibility() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let alice = try server.user("alice"), bob = try server.user("bob"), carol = try server.user("carol")
        try CLI.run(["admin", "org", "create", "acme", "--owner", "alice", "--data", server.data.path])
        #expect(try server.curl("PUT", "/v1/organizations/acme/members/carol", token: alice, body: #"{"role":"member"}"#).0 == 200)
        let home = try TestSupport.makeProject([:])
        #expect(try lathe(["push", TestSupport.sample("hello").path, "acme/secret"], home: home, registry: server, token: alice).status == 0)
        #expect(try lathe(["push", TestSupport.sample("hello").path, "alice/open", "--public"], home: home, registry: server, token: alice).status == 0)

        for path in ["/v1/models/acme/secret", "/v1/models/acme/secret/versions", "/v2/acme/secret/tags/list", "/v2/acme/secret/manifests/latest"] {
            #expect(try server.curl("GET", path).0 == 404, "anonymous \(path)")
            #expect(try server.curl("GET", path, token: bob).0 == 404, "bob \(path)")
            #expect(try server.curl("GET", path, token: carol).0 == 200, "carol (member) \(path)")
            #expect(try server.curl("GET", path, token: alice).0 == 200, "alice (owner) \(path)")
        }
        #expect(try server.curl("GET", "/v1/models/alice/open").0 == 200)
        #expect(try server.curl("GET", "/v2/alice/open/manifests/latest").0 == 200)
        let listed = try server.curl("GET", "/v1/models").1
        #expect(listed.contains("\"open\"") && !listed.contains("secret"))
        #expect(try lathe(["push", TestSupport.sample("hello").path, "alice/open"], home: home, registry: server, token: bob).status != 0, "bob cannot push to alice's model")
        let revoked = try server.curl("GET", "/v1/tokens", token: alice).1
        let id = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(revoked.utf8))["results"]?.arrayValue?.first?["id"]?.stringValue)
        #expect(try server.curl("DELETE", "/v1/tokens/\(id)", token: alice).0 == 204)
        #expect(try server.curl("GET", "/v1/account", token: alice).0 == 401, "a revoked token no longer works")
    }

    @Test("skopeo copies a version out of the registry and into another repository")
    func skopeo() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let pushed = try decode(try lathe(["push", TestSupport.sample("classifier").path, "alice/classifier", "--json"], home: home, registry: server, token: token))
        let layout = home.appendingPathComponent("layout")
        let creds = ["--src-creds", "alice:\(token)", "--src-tls-verify=false"]
        let out = try TestSupport.run("skopeo", ["copy"] + creds + ["docker://127.0.0.1:\(server.port)/alice/classifier:latest", "oci:\(layout.path):copy"])
        #expect(out.status == 0, "\(out.stderrText)")
        let back = try TestSupport.run("skopeo", ["copy", "--dest-creds", "alice:\(token)", "--dest-tls-verify=false",
                                                  "oci:\(layout.path):copy", "docker://127.0.0.1:\(server.port)/alice/copied:v1"])
        #expect(back.status == 0, "\(back.stderrText)")
        let (status, body) = try server.curl("GET", "/v1/models/alice/copied/versions", token: token)
        #expect(status == 200)
        #expect(body.contains(try #require(pushed["version"]?.stringValue)))
    }

    @Test("settings come from a YAML config file and the environment")
    func configuration() throws {
        let folder = try TestSupport.makeProject([:])
        let data = folder.appendingPathComponent("data")
        try TestSupport.write("data: \(data.path)\nhost: 127.0.0.1\nport: 0\nbase_url: http://lathe.test:8443\n", to: folder.appendingPathComponent("lathe.yaml"))
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = ["serve", "--config", folder.appendingPathComponent("lathe.yaml").path, "--log-level", "warning"]
        process.environment = ProcessInfo.processInfo.environment.merging(try TestDatabase.environment(forData: data.path)) { _, new in new }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(line.contains("(data \(data.path))"), "\(line)")
        #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent("registry.sqlite").path) == (TestDatabase.postgres == nil),
                "SQLite in the data folder unless the database is PostgreSQL")
        try CLI.run(["admin", "user", "create", "alice", "--data", data.path])
        let token = try CLI.run(["admin", "token", "create", "alice", "--data", data.path]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let port = try #require(line.range(of: #"127\.0\.0\.1:\d+"#, options: .regularExpression).map { String(line[$0].split(separator: ":")[1]) })
        let created = try TestSupport.run("curl", ["-s", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                                                   "--data-binary", #"{"owner":"alice","name":"m","visibility":"public"}"#, "http://127.0.0.1:\(port)/v1/models"])
        #expect(created.output.contains(#""url":"http://lathe.test:8443/alice/m""#), "model URLs use base_url: \(created.output)")
    }

    @Test("lathe login checks the token and saves it with mode 0600; push then needs no LATHE_TOKEN")
    func login() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let bad = try TestSupport.run("bash", ["-c", "echo lat_wrong | \"$0\" login \"$1\" --token-stdin", CLI.binary.path, server.url],
                                      environment: ["LATHE_HOME": home.path])
        #expect(bad.status == 1)
        #expect(bad.stderrText.contains("401"), "\(bad.stderrText)")
        let good = try TestSupport.run("bash", ["-c", "echo \"$2\" | \"$0\" login \"$1\" --token-stdin", CLI.binary.path, server.url, token],
                                       environment: ["LATHE_HOME": home.path])
        #expect(good.output == "logged in to \(server.url) as alice\n", "\(good.stderrText)")
        let attributes = try FileManager.default.attributesOfItem(atPath: home.appendingPathComponent("credentials.json").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let pushed = try TestSupport.run(CLI.binary.path, ["push", TestSupport.sample("hello").path, "alice/hello"], environment: ["LATHE_HOME": home.path])
        #expect(pushed.status == 0, "\(pushed.stderrText)")
        #expect(pushed.output.hasSuffix("\(server.url)/alice/hello\n"))
    }

    @Test("model listing pages with absolute next links, search, readme, patch and delete")
    func modelAPI() throws {
        let server = try RegistryServer(arguments: ["--metrics-token", "metrics-secret"])
        defer { server.stop() }
        let token = try server.user("alice")
        for index in 0..<30 {
            let (status, _) = try server.curl("POST", "/v1/models", token: token,
                                              body: #"{"owner":"alice","name":"m\#(index)","visibility":"public","description":"model number \#(index)"}"#)
            #expect(status == 201)
        }
        #expect(try server.curl("POST", "/v1/models", token: token, body: #"{"owner":"alice","name":"hidden","visibility":"private"}"#).0 == 201)
        let first = try JSONDecoder().decode(JSONValue.self, from: Data(try server.curl("GET", "/v1/models").1.utf8))
        #expect(first["results"]?.arrayValue?.count == 25)
        let next = try #require(first["next"]?.stringValue)
        #expect(next.hasPrefix(server.url + "/v1/models?cursor="), "next is absolute: \(next)")
        let second = try JSONDecoder().decode(JSONValue.self, from: Data(try server.curl("GET", String(next.dropFirst(server.url.count))).1.utf8))
        #expect(second["results"]?.arrayValue?.count == 5)
        #expect(second["next"] == .null)
        let names = ((first["results"]?.arrayValue ?? []) + (second["results"]?.arrayValue ?? [])).compactMap { $0["name"]?.stringValue }
        #expect(Set(names).count == 30 && !names.contains("hidden"))

        let found = try JSONDecoder().decode(JSONValue.self, from: Data(try server.curl("QUERY", "/v1/models", token: token, body: "number 17").1.utf8))
        #expect(found["results"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["m17"])

        #expect(try server.curl("GET", "/v1/models/alice/m3/readme").0 == 404)
        #expect(try server.curl("PATCH", "/v1/models/alice/m3", token: token, body: ##"{"readme":"# M3\nDoes things."}"##).0 == 200)
        let readme = try server.curl("GET", "/v1/models/alice/m3/readme")
        #expect(readme.0 == 200 && readme.1 == "# M3\nDoes things.")
        #expect(try server.curl("PATCH", "/v1/models/alice/m3", token: token, body: #"{"visibility":"private"}"#).0 == 200)
        #expect(try server.curl("GET", "/v1/models/alice/m3").0 == 404, "now private")
        #expect(try server.curl("DELETE", "/v1/models/alice/m3", token: token).0 == 204)
        #expect(try server.curl("GET", "/v1/models/alice/m3", token: token).0 == 404)
        let metrics = try server.curl("GET", "/metrics", headers: ["Authorization: Bearer metrics-secret"])
        #expect(try server.curl("GET", "/metrics").0 == 401, "/metrics needs the operator's token")
        #expect(metrics.0 == 200 && metrics.1.contains("hb_request"), "Prometheus metrics are served")
        server.stop()
        #expect(server.process.terminationStatus == 0, "SIGTERM shuts the server down cleanly")
    }
}
