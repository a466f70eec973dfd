import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("every sample runs with lathe predict and answers correctly", .serialized)
struct SampleTests {
    @Test("hello greets")
    func hello() throws {
        let result = try CLI.run(["predict", TestSupport.sample("hello").path, "-i", "text=world"])
        #expect(result.status == 0, "\(result.stderrText)")
        #expect(result.output == "Hello, world!\n")
        let report = try CLI.json(["predict", TestSupport.sample("hello").path, "-i", "text=Ada"])
        #expect(report["status"] == .string("succeeded"))
        #expect(report["output"] == .string("Hello, Ada!"))
        #expect(report["logs"]?.stringValue?.contains("greeting Ada") == true)
    }

    @Test("the classifier labels held-out sentences correctly, from the built version")
    func classifier() throws {
        let directory = TestSupport.sample("classifier")
        let dump = try TestSupport.run("python3", ["-c", "import json; from data import HELDOUT; print(json.dumps(HELDOUT))"], directory: directory)
        let heldout = try JSONDecoder().decode([[String]].self, from: dump.stdout)
        #expect(heldout.count == 10)
        let build = try CLI.json(["build", directory.path, "-t", "e2e/classifier"])
        let version = try #require(build["version"]?.stringValue)
        for pair in heldout {
            let report = try CLI.json(["predict", String(version.prefix(12)), "-i", "text=\(pair[0])"])
            #expect(report["output"]?["label"] == .string(pair[1]), "\(pair[0])")
            #expect((report["output"]?["score"]?.doubleValue ?? 0) > 0.5)
        }
    }

    @Test("the image model takes a file and returns a file")
    func image() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-e2e-\(UUID().uuidString).png")
        let result = try CLI.run(["predict", TestSupport.sample("image").path, "-i", "image=@\(TestSupport.sample("image").path)/example.png",
                                  "-i", "effect=invert", "-i", "caption=hello", "-o", output.path])
        #expect(result.status == 0, "\(result.stderrText)")
        #expect(result.output == output.path + "\n")
        let png = try Data(contentsOf: output)
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let width = png[16..<20].reduce(0) { $0 << 8 | Int($1) }, height = png[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(width == 64 && height == 48 + 24, "the caption band is added under the 64×48 picture")
        let pixels = try TestSupport.run(CLI.home.path + "/envs/" + (try pillowEnvironment()) + "/bin/python", ["-c", """
        from PIL import Image
        a = Image.open("\(TestSupport.sample("image").path)/example.png").convert("RGB").getpixel((30, 20))
        b = Image.open("\(output.path)").convert("RGB").getpixel((30, 20))
        print(a, b)
        """])
        #expect(pixels.output == "(220, 30, 30) (35, 225, 225)\n", "the red square is inverted")
    }

    private func pillowEnvironment() throws -> String {
        let envs = try FileManager.default.contentsOfDirectory(atPath: CLI.home.path + "/envs")
        return try #require(envs.first { FileManager.default.fileExists(atPath: "\(CLI.home.path)/envs/\($0)/lib/python3.11/site-packages/PIL") })
    }

    @Test("the streamer prints words as they come, the same text as its JSON output")
    func streamer() throws {
        let arguments = ["predict", TestSupport.sample("streamer").path, "-i", "prompt=the boats", "-i", "max_words=15", "-i", "seed=4"]
        let printed = try CLI.run(arguments)
        #expect(printed.status == 0)
        let report = try CLI.json(arguments)
        let items = try #require(report["output"]?.arrayValue)
        #expect(items.count == 15)
        #expect(printed.output == items.compactMap(\.stringValue).joined() + "\n")
    }

    @Test("MiniLM embeds related sentences close together")
    func minilm() throws {
        let fetch = try TestSupport.run("python3", [TestSupport.sample("minilm").appendingPathComponent("fetch_weights.py").path])
        #expect(fetch.status == 0, "\(fetch.stderrText)")
        let report = try CLI.json(["predict", TestSupport.sample("minilm").path,
                                   "-i", "sentences=A man is eating food.", "-i", "sentences=A man is eating a piece of bread.",
                                   "-i", "sentences=The new movie is awesome.", "-i", "sentences=The film was great fun to watch."])
        let vectors = try #require(report["output"]?.arrayValue).map { $0.arrayValue?.compactMap(\.doubleValue) ?? [] }
        #expect(vectors.count == 4 && vectors.allSatisfy { $0.count == 384 })
        func cosine(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        let food = cosine(vectors[0], vectors[1]), films = cosine(vectors[2], vectors[3])
        let unrelated = [cosine(vectors[0], vectors[2]), cosine(vectors[1], vectors[3]), cosine(vectors[0], vectors[3])]
        #expect(food > 0.7 && films > 0.5, "related: \(food), \(films)")
        #expect(unrelated.allSatisfy { $0 < 0.2 }, "unrelated: \(unrelated)")
    }
}
