import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("pushing survives a registry crash", .serialized)
struct InterruptedPushTests {
    @Test("SIGKILL the registry while 1 GiB of weights uploads; after a restart, push resumes and re-sends at most one chunk")
    func resume() throws {
        let size = 1 << 30, chunk = 64 << 20
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n  text: {type: string}\noutput: {type: string}\nweights:\n  - path: weights/big.bin\n",
            "predict.py": "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        try FileManager.default.createDirectory(at: project.appendingPathComponent("weights"), withIntermediateDirectories: true)
        let weights = project.appendingPathComponent("weights/big.bin")
        try TestSupport.run("python3", ["-c", "import os,sys\nb=os.urandom(1<<20)\nwith open(sys.argv[1],'wb') as f:\n  for i in range(1024): f.write(b[:-4]+i.to_bytes(4,'little'))", weights.path])
        defer { try? FileManager.default.removeItem(at: project) }

        let server = try RegistryServer()
        defer { server.stop(); try? FileManager.default.removeItem(at: server.data) }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        defer { try? FileManager.default.removeItem(at: home) }

        let push = Process()
        push.executableURL = CLI.binary
        push.arguments = ["push", project.path, "alice/big", "--json"]
        push.environment = ProcessInfo.processInfo.environment.merging(
            ["LATHE_HOME": home.path, "LATHE_REGISTRY": server.url, "LATHE_TOKEN": token, "LATHE_CHUNK_SIZE": String(chunk)]) { _, new in new }
        push.standardOutput = FileHandle.nullDevice
        push.standardError = FileHandle.nullDevice
        try push.run()

        // Wait until a good part of the weights has arrived, then kill the registry outright.
        func received() -> Int { TestDatabase.uploadedBytes(forData: server.data) }
        let deadline = Date().addingTimeInterval(120)
        while received() < 300 << 20, Date() < deadline, push.isRunning { usleep(20_000) }
        server.kill9()
        push.waitUntilExit()
        #expect(push.terminationStatus != 0, "the push fails when the registry dies")
        let before = received()
        #expect(before >= 300 << 20 && before < size, "killed mid-upload at \(before) bytes")

        try server.start(port: server.port)
        #expect(try server.curl("GET", "/v1/models/alice/big", token: token).0 == 404, "no partial model or version is visible")

        let again = try decode(try lathe(["push", project.path, "alice/big", "--json"], home: home, registry: server, token: token))
        let uploaded = try #require(again["bytes_uploaded"]?.doubleValue)
        let remaining = Double(size - before)
        #expect(uploaded >= remaining, "the rest was sent: \(uploaded) of \(remaining)")
        #expect(uploaded - remaining <= Double(chunk) + 100_000, "re-sent \(uploaded - remaining) bytes, at most one chunk plus code and config")

        let other = try TestSupport.makeProject([:])
        defer { try? FileManager.default.removeItem(at: other) }
        let pulled = try lathe(["pull", "alice/big"], home: other, registry: server, token: token)
        #expect(pulled.status == 0, "\(pulled.stderrText)")
        #expect(pulled.output.trimmingCharacters(in: .whitespacesAndNewlines) == again["version"]?.stringValue)
        let sum = try TestSupport.run("sha256sum", [weights.path]).output.prefix(64)
        #expect(FileManager.default.fileExists(atPath: other.appendingPathComponent("store/blobs/sha256/\(sum)").path), "the weights arrived intact")
    }
}
