import Foundation
import LatheTestSupport
import Testing
@testable import LatheRunner
@testable import LatheSpec

@Suite("the bubblewrap sandbox", .serialized, .enabled(if: (try? Sandbox.detect(network: false)) != nil))
struct SandboxTests {
    @Test("no network, no secrets, read-only code, private /tmp")
    func confinement() async throws {
        // Stand-ins for what a server keeps next to its models: a database beside the work folders.
        let secret = runnerHome.appendingPathComponent("registry-\(UUID().uuidString).db")
        try FileManager.default.createDirectory(at: runnerHome, withIntermediateDirectories: true)
        try Data("top secret".utf8).write(to: secret)
        let (process, setup) = try await startModel("""
        import json, os, socket
        class Predictor:
            def predict(self, text: str) -> str:
                results = {}
                try:
                    socket.create_connection(("127.0.0.1", 22), timeout=2)
                    results["network"] = "connected"
                except OSError as error:
                    results["network"] = type(error).__name__
                for name, path in [("secret", \(String(decoding: try JSON.canonical(secret.path), as: UTF8.self))), ("shadow", "/etc/shadow"), ("history", "/root/.cache"), ("server", \(String(decoding: try JSON.canonical(TestSupport.repositoryRoot.appendingPathComponent("Package.swift").path), as: UTF8.self)))]:
                    results[name] = "visible" if os.path.exists(path) else "hidden"
                try:
                    open("/src/written.txt", "w").write("x")
                    results["code"] = "writable"
                except OSError:
                    results["code"] = "read-only"
                open("/tmp/scratch.txt", "w").write("ok")
                results["tmp"] = "writable"
                results["uid"] = os.getuid()
                return json.dumps(results, sort_keys=True)
        """)
        defer { process.terminate() }
        guard case .ready = setup else { Issue.record("setup failed: \(setup)"); return }
        let outcome = await process.predict(id: "s", input: ["text": .string("x")], outputDirectory: outputs(process), timeout: 30)
        let results = try JSONDecoder().decode([String: JSONValue].self, from: Data((outcome.output?.stringValue ?? "{}").utf8))
        #expect(results["network"] != .string("connected"))
        #expect(results["secret"] == .string("hidden"))
        #expect(results["shadow"] == .string("hidden"))
        #expect(results["history"] == .string("hidden"))
        #expect(results["server"] == .string("hidden"))
        #expect(results["code"] == .string("read-only"))
        #expect(results["tmp"] == .string("writable"))
        #expect(results["uid"] == .int(65534))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/scratch.txt") || (try? String(contentsOfFile: "/tmp/scratch.txt", encoding: .utf8)) != "ok")
    }
}
