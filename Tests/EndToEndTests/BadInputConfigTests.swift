import Foundation
import LatheArchive
import LatheSpec
import LatheTestSupport
import Testing

/// Issue 19: what a stranger pushes is parsed like `lathe validate` parses `lathe.yaml` before a
/// version exists, and an upload has one writer at a time. Each case here passed on the old code
/// (the version was registered, or two writers raced into one upload).
@Suite("hostile configs and racing uploads are refused", .serialized)
struct BadInputConfigTests {
    /// Pushes `hello` as alice/hello, then pushes its manifest to alice/evil with the config
    /// changed by `edit` (as JSON, so values the typed config cannot hold can be written).
    static func pushEdited(_ server: RegistryServer, token: String, scratch: URL,
                           manifestEdit: (inout Manifest) -> Void = { _ in },
                           edit: (inout [String: JSONValue]) -> Void) throws -> (Int, String) {
        let image = try LocalStore(root: home(server, token).appendingPathComponent("store")).resolve("samples/hello")
        guard case .object(var config) = try JSONDecoder().decode(JSONValue.self, from: try JSON.canonical(image.config)) else {
            throw TestFailure("config is not an object")
        }
        edit(&config)
        let configData = try JSON.canonical(JSONValue.object(config))
        let configFile = scratch.appendingPathComponent("config-\(UUID().uuidString).json")
        try configData.write(to: configFile)
        let configDigest = Digest.of(configData)
        var (status, body) = try server.curl("POST", "/v2/alice/evil/blobs/uploads/?digest=\(configDigest)", token: token, bodyFile: configFile)
        guard status == 201 else { return (status, body) }
        for layer in image.manifest.layers {
            (status, body) = try server.curl("POST", "/v2/alice/evil/blobs/uploads/?mount=\(layer.digest)&from=alice/hello", token: token)
            guard status == 201 else { return (status, body) }
        }
        var manifest = image.manifest
        manifest.config = Descriptor(mediaType: MediaType.config, digest: configDigest, size: Int64(configData.count))
        manifestEdit(&manifest)
        let manifestFile = scratch.appendingPathComponent("manifest-\(UUID().uuidString).json")
        try JSON.canonical(manifest).write(to: manifestFile)
        return try server.curl("PUT", "/v2/alice/evil/manifests/v1", token: token, bodyFile: manifestFile,
                               headers: ["Content-Type: application/vnd.oci.image.manifest.v1+json"])
    }

    /// A home whose store holds `samples/hello`, pushed once as alice/hello.
    static func home(_ server: RegistryServer, _ token: String) throws -> URL {
        if let home = homes[server.url] { return home }
        let home = try TestSupport.makeProject([:])
        let pushed = try lathe(["push", TestSupport.sample("hello").path, "alice/hello"], home: home, registry: server, token: token)
        guard pushed.status == 0 else { throw TestFailure("push failed: \(pushed.stderrText)") }
        homes[server.url] = home
        return home
    }
    nonisolated(unsafe) static var homes: [String: URL] = [:]

    static func spec(_ config: inout [String: JSONValue], _ edit: (inout [String: JSONValue]) -> Void) {
        guard case .object(var spec) = config["spec"] else { return }
        edit(&spec)
        config["spec"] = .object(spec)
    }

    static func input(_ config: inout [String: JSONValue], _ fields: [String: JSONValue]) {
        spec(&config) { spec in
            spec["inputs"] = .array([.object(["name": .string("n"), "type": .string("integer")].merging(fields) { _, new in new })])
        }
    }

    @Test("a config's spec is checked like lathe.yaml: python paths, huge numbers, durations, names; sizes and layer counts")
    func hostileConfigs() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let scratch = try TestSupport.makeProject([:])
        let refusals: [(String, (inout [String: JSONValue]) -> Void, String)] = [
            ("a path as python (ran on the host before)", { c in Self.spec(&c) { $0["python"] = .string("/tmp/lathe-evil/run") } }, "python"),
            ("python with a command", { c in Self.spec(&c) { $0["python"] = .string("3.11; touch /tmp/x") } }, "python"),
            ("an integer bound of 1e300 (trapped the model page)", { c in Self.input(&c, ["minimum": .number(1e300)]) }, "2^53"),
            ("a default beyond 2^53", { c in Self.input(&c, ["default": .number(-1e19)]) }, "2^53"),
            ("a timeout of centuries", { c in Self.spec(&c) { $0["timeout"] = .int(Int.max) } }, "timeout"),
            ("concurrency out of range", { c in Self.spec(&c) { $0["concurrency"] = .int(1 << 40) } }, "concurrency"),
            ("an input name that is not an identifier", { c in Self.spec(&c) {
                $0["inputs"] = .array([.object(["name": .string("a\" onload=\"x"), "type": .string("string")])]) } }, "identifier"),
            ("a predict file outside the project", { c in Self.spec(&c) { $0["predict"] = .string("../../etc/x.py:P") } }, "predict"),
            ("a weights path outside the project", { c in Self.spec(&c) { $0["weights"] = .array([.object(["path": .string("/etc/passwd")])]) } }, "weights"),
            ("a pattern that is not an expression", { c in Self.spec(&c) {
                $0["inputs"] = .array([.object(["name": .string("s"), "type": .string("string"), "pattern": .string("(")])]) } }, "pattern"),
            ("a description of a megabyte", { c in Self.spec(&c) { $0["description"] = .string(String(repeating: "x", count: 1 << 20)) } }, "KiB"),
            ("a pushed config claiming to run train (only the registry derives those)", { c in c["role"] = .string("train") }, "role"),
            ("a pushed config claiming to be a training's", { c in c["training_of"] = .string(String(repeating: "b", count: 64)) }, "training_of"),
            ("a train entry outside the project", { c in Self.spec(&c) { $0["train"] = .object(["entry": .string("../x.py:t"), "inputs": .array([])]) } }, "train"),
        ]
        for (what, edit, word) in refusals {
            let (status, body) = try Self.pushEdited(server, token: token, scratch: scratch, edit: edit)
            #expect(status == 400 && ociCode(body) == "MANIFEST_INVALID" && body.contains(word), "\(what): \(status) \(body.prefix(300))")
        }
        #expect(try server.curl("GET", "/v1/models/alice/evil", token: token).0 == 404, "no version came of any of them")

        // Declared sizes must be the stored ones (the code layer's inflation limit trusts them).
        var (status, body) = try Self.pushEdited(server, token: token, scratch: scratch, manifestEdit: { $0.layers[0].size = 1_000_000_000_000 }) { _ in }
        #expect(status == 400 && ociCode(body) == "SIZE_INVALID", "\(status) \(body)")
        // A manifest with thousands of layers is refused before any of them is looked up.
        (status, body) = try Self.pushEdited(server, token: token, scratch: scratch, manifestEdit: { manifest in
            manifest.layers = Array(repeating: manifest.layers[0], count: 5_000)
        }) { _ in }
        #expect(status == 400 && ociCode(body) == "MANIFEST_INVALID" && body.contains("layers"), "\(status) \(body.prefix(300))")

        // The unedited config still goes through, and the served schema is the registry's own.
        (status, body) = try Self.pushEdited(server, token: token, scratch: scratch) { c in
            c["openapi_schema"] = .object(["components": .object(["schemas": .object(["Input": .object(["minimum": .number(1e300)])])])])
        }
        #expect(status == 201, "\(status) \(body)")
        (status, body) = try server.curl("GET", "/v1/models/alice/evil/versions", token: token)
        #expect(status == 200 && body.contains("\"Input\"") && !body.contains("1e+300"), "\(body.prefix(300))")
        #expect(try server.curl("GET", "/alice/evil", token: token).0 == 200, "the model page renders")
    }

    @Test("random and extreme configs through push, the versions API and the model page: 201 or 400, never a dead server")
    func fuzzPushes() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let scratch = try TestSupport.makeProject([:])
        var random = SpecFuzzer.Generator(state: 0x5EED)
        var outcomes: [Int: Int] = [:]
        let cases = Int(ProcessInfo.processInfo.environment["LATHE_FUZZ_PUSHES"] ?? "") ?? 60
        for round in 0..<cases {
            // A third of the cases: a whole random spec; a third: hello's spec with one field
            // replaced (many pass and reach the pages); a third: one numeric input whose bounds
            // and default are extreme numbers of the right JSON type (what trapped the model page).
            let whole = SpecFuzzer.spec(&random)
            let key = ["python", "predict", "output", "timeout", "concurrency", "description", "name", "weights", "inputs"].randomElement(using: &random)!
            let replacement = key == "inputs" ? JSONValue.array([SpecFuzzer.input(&random, index: round)]) : whole[key] ?? SpecFuzzer.anyValue(&random)
            let numeric = JSONValue.array([.object([
                "name": .string("n"), "type": .string(Bool.random(using: &random) ? "integer" : "number"),
                "minimum": SpecFuzzer.numbers.randomElement(using: &random)!, "maximum": SpecFuzzer.numbers.randomElement(using: &random)!,
                "default": SpecFuzzer.numbers.randomElement(using: &random)!,
            ])])
            let (status, body) = try Self.pushEdited(server, token: token, scratch: scratch) { config in
                switch round % 3 {
                case 0: config["spec"] = whole
                case 1: Self.spec(&config) { $0[key] = replacement }
                default: Self.spec(&config) { $0["inputs"] = numeric }
                }
            }
            outcomes[status, default: 0] += 1
            #expect(status == 201 || (status == 400 && ociCode(body) == "MANIFEST_INVALID"), "case \(round): \(status) \(body.prefix(300))")
            if status == 201 {
                #expect(try server.curl("GET", "/v1/models/alice/evil/versions", token: token).0 == 200, "case \(round)")
                #expect(try server.curl("GET", "/alice/evil", token: token).0 == 200, "case \(round): the model page")
                #expect(try server.curl("GET", "/alice/evil").0 == 404, "case \(round): private to strangers")
            }
        }
        #expect(try server.curl("GET", "/healthz").0 == 200)
        #expect(outcomes[201, default: 0] > 0 && outcomes[400, default: 0] > 0, "both outcomes reached: \(outcomes)")
    }

    @Test("two requests writing to one upload at once: one is refused, and what is stored is what its digest says")
    func uploadRace() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let scratch = try TestSupport.makeProject([:])
        let size = 24 << 20
        let a = scratch.appendingPathComponent("a.bin"), b = scratch.appendingPathComponent("b.bin")
        try Data(repeating: 0x61, count: size).write(to: a)
        try Data(repeating: 0x62, count: size).write(to: b)
        let digestA = Digest.of(try Data(contentsOf: a)), digestB = Digest.of(try Data(contentsOf: b))
        #expect(try server.curl("POST", "/v1/models", token: token, body: #"{"owner":"alice","name":"race","visibility":"private"}"#).0 == 201)
        /// The sha256 of the bytes the registry serves as `digest` (following a redirect to S3 without the token).
        func served(_ digest: Digest) throws -> String {
            let target = try TestSupport.run("curl", ["-s", "-o", "/dev/null", "-w", "%{redirect_url}", "-H", "Authorization: Bearer \(token)",
                                                      server.url + "/v2/alice/race/blobs/\(digest)"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            let command = target.isEmpty ? "curl -s -H 'Authorization: Bearer \(token)' '\(server.url)/v2/alice/race/blobs/\(digest)' | sha256sum"
                                         : "curl -s '\(target)' | sha256sum"
            return try TestSupport.run("sh", ["-c", command]).output
        }
        for round in 0..<3 {
            let opened = try TestSupport.run("curl", ["-s", "-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Authorization: Bearer \(token)",
                                                      server.url + "/v2/alice/race/blobs/uploads/"])
            let line = try #require(opened.output.split(separator: "\r\n").first { $0.lowercased().hasPrefix("location:") })
            let location = String(line.dropFirst("location:".count)).trimmingCharacters(in: .whitespaces)
            // Both PATCHes at once, each sending its whole body at offset 0 (slowed to overlap).
            final class Box: @unchecked Sendable { var values = [0, 0]; let lock = NSLock() }
            let box = Box()
            DispatchQueue.concurrentPerform(iterations: 2) { index in
                let result = try? TestSupport.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "40M", "-X", "PATCH",
                                                           "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/octet-stream",
                                                           "--data-binary", "@" + (index == 0 ? a : b).path, server.url + location])
                let status = Int(result?.output.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
                box.lock.withLock { box.values[index] = status }
            }
            let statuses = box.values
            let accepted = statuses.filter { $0 == 202 }.count
            #expect(accepted == 1 && statuses.allSatisfy { [202, 409, 416].contains($0) }, "round \(round): \(statuses)")
            // Whichever digest the client names, the blob is stored only if its bytes are that digest.
            for digest in [digestA, digestB] {
                let (status, _) = try server.curl("PUT", location + "?digest=\(digest)", token: token)
                if status == 201 {
                    let fetched = try served(digest)
                    #expect(fetched.hasPrefix(digest.hex), "round \(round): the blob stored as \(digest) holds other bytes (\(fetched))")
                    break
                }
            }
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("the CLI reads hostile specs without crashing")
struct HostileSpecCommandTests {
    @Test("lathe schema and lathe validate on huge bounds, long durations and alias bombs answer with diagnostics")
    func hostileSpecs() throws {
        let predict = "class Predictor:\n    def predict(self, n: int) -> str:\n        return str(n)\n"
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 { bomb += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let specs = [
            ("minimum: 9.3e18 (trapped `lathe schema`)", "predict: predict.py:Predictor\ninputs: {n: {type: integer, minimum: 9.3e18}}\noutput: {type: string}\n", "2^53"),
            ("a timeout that overflows", "predict: predict.py:Predictor\ninputs: {n: {type: integer}}\noutput: {type: string}\ntimeout: 9999999999999999h\n", "timeout"),
            ("nine levels of aliases", bomb + "predict: predict.py:Predictor\ninputs: {n: {type: integer}}\noutput: {type: string}\n", "expands to more than"),
        ]
        for (what, spec, word) in specs {
            let project = try TestSupport.makeProject(["lathe.yaml": spec, "predict.py": predict])
            for command in ["schema", "validate"] {
                let result = try CLI.run([command, project.path])
                #expect(result.status == 1 && result.stderrText.contains(word), "\(what), lathe \(command): \(result.status) \(result.stderrText.prefix(300))")
            }
        }
    }
}
