import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("lathe push and pull against the reference OCI registry", .serialized)
struct InteropTests {
    @Test("push, pull and run through Debian's docker-registry (distribution) on loopback")
    func referenceRegistry() throws {
        let folder = try TestSupport.makeProject([:])
        defer { try? FileManager.default.removeItem(at: folder) }
        // A free port: bind one, note it, release it, hand it to the registry.
        let probe = try TestSupport.run("python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
        let port = Int(probe.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 15000
        try TestSupport.write("""
        version: 0.1
        log: {level: warn}
        storage:
          filesystem: {rootdirectory: \(folder.path)/data}
          delete: {enabled: true}
        http: {addr: 127.0.0.1:\(port)}
        """, to: folder.appendingPathComponent("config.yml"))
        let registry = Process()
        registry.executableURL = URL(fileURLWithPath: try ChildProcess.resolve("docker-registry"))
        registry.arguments = ["serve", folder.appendingPathComponent("config.yml").path]
        registry.standardOutput = FileHandle.nullDevice
        registry.standardError = FileHandle.nullDevice
        try registry.run()
        defer { registry.terminate(); registry.waitUntilExit() }
        var up = false
        for _ in 0..<100 where !up {
            up = (try? TestSupport.run("curl", ["-sf", "http://127.0.0.1:\(port)/v2/"]))?.status == 0
            if !up { usleep(50_000) }
        }
        #expect(up, "docker-registry started")

        let environment = ["LATHE_HOME": folder.appendingPathComponent("home").path]
        let pushed = try TestSupport.run(CLI.binary.path, ["push", TestSupport.sample("classifier").path, "acme/classifier",
                                                           "--registry", "http://127.0.0.1:\(port)", "--json"], environment: environment)
        #expect(pushed.status == 0, "\(pushed.stderrText)")
        let version = try #require(try JSONDecoder().decode([String: JSONValue].self, from: pushed.stdout)["version"]?.stringValue)
        let again = try TestSupport.run(CLI.binary.path, ["push", TestSupport.sample("classifier").path, "acme/classifier",
                                                          "--registry", "http://127.0.0.1:\(port)", "--json"], environment: environment)
        #expect(try JSONDecoder().decode([String: JSONValue].self, from: again.stdout)["blobs_skipped"] == .int(3))

        let fresh = ["LATHE_HOME": folder.appendingPathComponent("other").path]
        let pulled = try TestSupport.run(CLI.binary.path, ["pull", "acme/classifier", "--registry", "http://127.0.0.1:\(port)"], environment: fresh)
        #expect(pulled.status == 0, "\(pulled.stderrText)")
        #expect(pulled.output == version + "\n")
        let byVersion = try TestSupport.run(CLI.binary.path, ["pull", "acme/classifier:\(version)", "--registry", "http://127.0.0.1:\(port)"], environment: fresh)
        #expect(byVersion.output == version + "\n", "\(byVersion.stderrText)")
        let predicted = try TestSupport.run(CLI.binary.path, ["predict", "acme/classifier:latest", "-i", "text=dreadful and rude"], environment: fresh)
        #expect(predicted.output.contains("negative"), "\(predicted.stderrText)")
    }
}
