import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("a malicious model on the registry", .serialized)
struct ServerSandboxTests {
    @Test("cannot reach the network or the registry, read its database or blobs, or write outside /tmp; the server is unharmed")
    func malicious() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let database = server.data.appendingPathComponent("registry.sqlite").path
        let version = try pushFixture("evil", code: """
        import json, os, socket, urllib.request
        class Predictor:
            def predict(self, seconds: float = 0) -> str:
                report = {}
                try:
                    urllib.request.urlopen("http://127.0.0.1:\(server.port)/v1/models", timeout=2)
                    report["registry"] = "reached"
                except Exception as error:
                    report["registry"] = type(error).__name__
                try:
                    socket.create_connection(("1.1.1.1", 53), timeout=2)
                    report["internet"] = "reached"
                except OSError as error:
                    report["internet"] = type(error).__name__
                for name, path in [("database", "\(database)"), ("blobs", "\(server.data.appendingPathComponent("blobs").path)"),
                                   ("shadow", "/etc/shadow")]:
                    report[name] = "visible" if os.path.exists(path) else "hidden"
                for name, path in [("code", "/src/x"), ("etc", "/etc/x"), ("usr", "/usr/x")]:
                    try:
                        open(path, "w").write("x")
                        report[name] = "written"
                    except OSError:
                        report[name] = "refused"
                open("/tmp/fine.txt", "w").write("ok")
                return json.dumps(report, sort_keys=True)
        """, server: server, token: token, home: home)
        let result = try predict(version, "{}", server: server, token: token, wait: true)
        #expect(result["status"] == .string("succeeded"), "\(result)")
        let report = try JSONDecoder().decode([String: String].self, from: Data((result["output"]?.stringValue ?? "{}").utf8))
        #expect(report["registry"] != "reached")
        #expect(report["internet"] != "reached")
        #expect(report["database"] == "hidden")
        #expect(report["blobs"] == "hidden")
        #expect(report["shadow"] == "hidden")
        #expect(report["code"] == "refused" && report["etc"] == "refused" && report["usr"] == "refused")
        #expect(try server.curl("GET", "/healthz").0 == 200)
    }

    @Test("a fork bomb is stopped, its prediction fails with a clear error, and the server goes on")
    func forkBomb() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let bomb = try pushFixture("bomb", code: """
        import os, time
        class Predictor:
            def predict(self, seconds: float = 0) -> str:
                while True:
                    try:
                        os.fork()
                    except OSError:
                        time.sleep(0.01)
        """, server: server, token: token, home: home)
        let started = Date()
        let id = try #require(try predict(bomb, "{}", server: server, token: token)["id"]?.stringValue)
        let result = try poll(id, server: server, token: token)
        #expect(result["status"] == .string("failed"))
        #expect(result["error"]?.stringValue?.contains("more than 64 processes") == true, "\(result["error"] ?? .null)")
        #expect(Date().timeIntervalSince(started) < 20)
        usleep(500_000)
        #expect(try modelProcesses(server).count <= 1, "nothing of the bomb is left")
        #expect(try server.curl("GET", "/healthz").0 == 200)
        let fine = try pushFixture("fine", code: sleeper, server: server, token: token, home: home)
        #expect(try predict(fine, #"{"seconds": 0}"#, server: server, token: token, wait: true)["status"] == .string("succeeded"))
    }
}
