import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("lathe run against the registry", .serialized)
struct RunCommandTests {
    @Test("file inputs are uploaded, file outputs downloaded, streamed text printed as it comes")
    func run() throws {
        let server = try RegistryServer()
        defer { server.stop() }
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        for sample in ["image", "streamer", "hello"] {
            #expect(try lathe(["push", TestSupport.sample(sample).path, "alice/\(sample)"], home: home, registry: server, token: token).status == 0)
        }
        let folder = home.appendingPathComponent("outputs")
        let image = try lathe(["run", "alice/image", "-i", "image=@\(TestSupport.sample("image").path)/example.png", "-i", "effect=invert",
                               "-o", folder.path], home: home, registry: server, token: token)
        #expect(image.status == 0, "\(image.stderrText)")
        #expect(image.output == folder.appendingPathComponent("output.png").path + "\n")
        #expect(try Data(contentsOf: folder.appendingPathComponent("output.png")).prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))

        let streamed = try lathe(["run", "alice/streamer", "--stream", "-i", "max_words=8", "-i", "seed=2", "-i", "delay=0"],
                                 home: home, registry: server, token: token)
        let report = try decode(try lathe(["run", "alice/streamer", "--json", "-i", "max_words=8", "-i", "seed=2", "-i", "delay=0"],
                                          home: home, registry: server, token: token))
        let words = try #require(report["output"]?.arrayValue).compactMap(\.stringValue)
        #expect(words.count == 8)
        #expect(streamed.output == words.joined() + "\n")

        let hello = try lathe(["run", "alice/hello", "--wait", "-i", "text=registry"], home: home, registry: server, token: token)
        #expect(hello.output == "Hello, registry!\n")
        let queued = try decode(try lathe(["run", "alice/hello", "--no-wait", "--json", "-i", "text=later"], home: home, registry: server, token: token))
        #expect(queued["id"]?.stringValue?.count == 26)
        // Answered at once (a warm `hello` may already have finished by then).
        #expect(["starting", "processing", "succeeded"].contains(queued["status"]?.stringValue ?? ""))
        let invalid = try lathe(["run", "alice/hello", "-i", "txt=registry"], home: home, registry: server, token: token)
        #expect(invalid.status == 1)
        #expect(invalid.stderrText.contains("422") && invalid.stderrText.contains("txt"), "\(invalid.stderrText)")
    }
}
