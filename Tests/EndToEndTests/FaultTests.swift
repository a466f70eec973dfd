import Foundation
import LatheSpec
import LatheTestSupport
import Testing

/// Pushes a one-file model (`predict.py` with `class Predictor`) and returns its version id.
func pushFixture(_ name: String, code: String, inputs: String = "  seconds: {type: number, default: 0}", output: String = "{type: string}",
                 extra: String = "", server: RegistryServer, token: String, home: URL) throws -> String {
    let project = try TestSupport.makeProject([
        "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n\(inputs)\noutput: \(output)\n\(extra)",
        "predict.py": code,
    ])
    let pushed = try decode(try lathe(["push", project.path, "alice/\(name)", "--json"], home: home, registry: server, token: token))
    return try #require(pushed["version"]?.stringValue)
}

/// Creates a prediction through the API and returns its id.
func predict(_ version: String, _ input: String, server: RegistryServer, token: String, wait: Bool = false) throws -> [String: JSONValue] {
    let (status, body) = try server.curl("POST", "/v1/predictions", token: token, body: #"{"version":"\#(version)","input":\#(input)}"#,
                                         headers: wait ? ["Prefer: wait"] : [])
    #expect(status == 201, "\(body)")
    return try JSONDecoder().decode([String: JSONValue].self, from: Data(body.utf8))
}

/// Polls a prediction until `until` holds for its status (or 60 s pass).
func poll(_ id: String, server: RegistryServer, token: String, until: (String) -> Bool = { ["succeeded", "failed", "canceled"].contains($0) }) throws -> [String: JSONValue] {
    let deadline = Date().addingTimeInterval(60)
    while true {
        let body = try server.curl("GET", "/v1/predictions/\(id)", token: token).1
        let prediction = try JSONDecoder().decode([String: JSONValue].self, from: Data(body.utf8))
        if until(prediction["status"]?.stringValue ?? "") || Date() > deadline { return prediction }
        usleep(50_000)
    }
}

/// The model (Python) processes the registry started: one per instance, their command line
/// begins with an environment of its data folder (bubblewrap's own process is not counted).
func modelProcesses(_ server: RegistryServer) throws -> [Int32] {
    let result = try TestSupport.run("pgrep", ["-f", "^" + server.data.appendingPathComponent("runtime/envs").path])
    return result.output.split(separator: "\n").compactMap { Int32($0) }
}

let sleeper = """
import time
class Predictor:
    def predict(self, seconds: float = 0) -> str:
        print("sleeping", seconds, flush=True)
        time.sleep(seconds)
        return "slept %s" % seconds
"""

@Suite("faults: crashes, restarts, hangs, floods", .serialized)
struct FaultTests {
    @Test("SIGKILL of an instance fails its prediction within 2 s; the next runs on a fresh instance")
    func instanceKilled() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let version = try pushFixture("sleeper", code: sleeper, server: server, token: token, home: home)
        let running = try predict(version, #"{"seconds": 30}"#, server: server, token: token)
        let id = try #require(running["id"]?.stringValue)
        _ = try poll(id, server: server, token: token) { $0 == "processing" }
        usleep(300_000)
        for pid in try modelProcesses(server) { kill(pid, SIGKILL) }
        let killed = Date()
        let failed = try poll(id, server: server, token: token)
        #expect(Date().timeIntervalSince(killed) < 2)
        #expect(failed["status"] == .string("failed"))
        #expect(failed["error"]?.stringValue?.contains("killed by signal 9") == true, "\(failed["error"] ?? .null)")
        let next = try predict(version, #"{"seconds": 0}"#, server: server, token: token, wait: true)
        #expect(next["status"] == .string("succeeded"))
        #expect(next["output"] == .string("slept 0.0"))
    }

    @Test("SIGKILL of the server: after a restart queued predictions run, the running one fails with a reason")
    func serverKilled() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-registry-\(UUID().uuidString)")
        try CLI.run(["admin", "user", "create", "alice", "--data", data.path])
        let token = try CLI.run(["admin", "token", "create", "alice", "--data", data.path]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try RegistryServer(data: data, arguments: ["--max-instances", "1"])
        defer { server.stop() }
        let home = try TestSupport.makeProject([:])
        let version = try pushFixture("sleeper", code: sleeper, server: server, token: token, home: home)
        let first = try #require(try predict(version, #"{"seconds": 30}"#, server: server, token: token)["id"]?.stringValue)
        let queued = try (0..<2).map { _ in try #require(try predict(version, #"{"seconds": 0.1}"#, server: server, token: token)["id"]?.stringValue) }
        _ = try poll(first, server: server, token: token) { $0 == "processing" }
        server.kill9()
        try server.start(port: server.port)
        let failed = try poll(first, server: server, token: token)
        #expect(failed["status"] == .string("failed"))
        #expect(failed["error"] == .string("The server restarted while this prediction was running"))
        for id in queued {
            let done = try poll(id, server: server, token: token)
            #expect(done["status"] == .string("succeeded"), "\(done)")
        }
    }

    @Test("a hanging predictor is stopped by its timeout; floods of logs and huge outputs are cut without harming the server")
    func limits() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let hang = try pushFixture("hang", code: sleeper, extra: "timeout: 2s\n", server: server, token: token, home: home)
        let started = Date()
        let hung = try poll(try #require(try predict(hang, #"{"seconds": 600}"#, server: server, token: token)["id"]?.stringValue), server: server, token: token)
        #expect(hung["status"] == .string("failed"))
        #expect(hung["error"] == .string("Prediction timed out"))
        #expect(Date().timeIntervalSince(started) < 15)

        let flood = try pushFixture("flood", code: """
        import sys
        class Predictor:
            def predict(self, seconds: float = 0) -> str:
                line = "x" * 1023 + "\\n"
                for _ in range(100 * 1024):
                    sys.stdout.write(line)
                return "done"
        """, server: server, token: token, home: home)
        let flooded = try poll(try #require(try predict(flood, "{}", server: server, token: token)["id"]?.stringValue), server: server, token: token)
        #expect(flooded["status"] == .string("succeeded"))
        let logs = flooded["logs"]?.stringValue ?? ""
        #expect(logs.utf8.count <= 9 << 20 && logs.contains("[logs truncated"), "100 MB of logs kept to ~8 MiB: \(logs.utf8.count)")

        let huge = try pushFixture("huge", code: """
        class Predictor:
            def predict(self, seconds: float = 0) -> str:
                return "y" * (200 * 1024 * 1024)
        """, server: server, token: token, home: home)
        let big = try poll(try #require(try predict(huge, "{}", server: server, token: token)["id"]?.stringValue), server: server, token: token)
        #expect(big["status"] == .string("failed"))
        #expect(big["error"]?.stringValue?.contains("more than the 16777216-byte limit") == true, "\(big["error"] ?? .null)")
        #expect(try server.curl("GET", "/healthz").0 == 200)
        #expect(try predict(hang, #"{"seconds": 0}"#, server: server, token: token, wait: true)["status"] == .string("succeeded"))
    }
}
