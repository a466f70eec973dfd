import Foundation
import LatheTestSupport
import Testing
@testable import LatheArchive
@testable import LatheSpec

/// Builds `project` into a fresh store and returns (store, result).
func buildFresh(_ project: URL) throws -> (LocalStore, ModelBuilder.Result) {
    let store = try LocalStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("lathe-store-\(UUID().uuidString)"))
    let cache = StatCache(url: store.root.appendingPathComponent("stat-cache.json"))
    let spec = try SpecParser.load(project: project)
    let result = try ModelBuilder(store: store, cache: cache).build(project: project, spec: spec, refName: "acme/model:latest")
    return (store, result)
}

let projectFiles = [
    "lathe.yaml": """
    name: acme/model
    predict: predict.py:Predictor
    inputs:
      text: {type: string}
    output: {type: string}
    weights:
      - path: weights/w.bin
      - path: weights/extra
    """,
    "predict.py": "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
    "utils/helper.py": "VALUE = 1\n",
    "notes.txt": "scratch notes, ignored\n",
    ".latheignore": "notes.txt\n",
    "weights/extra/a.bin": "AAAA",
    "weights/extra/b.bin": "BBBB",
]

/// Makes a project whose weights/w.bin holds `size` pseudo-random bytes.
func makeModelProject(weightsSize: Int = 1 << 20) throws -> URL {
    let project = try TestSupport.makeProject(projectFiles)
    var generator = SystemRandomNumberGenerator()
    let bytes = (0..<weightsSize).map { _ in UInt8.random(in: 0...255, using: &generator) }
    try Data(bytes).write(to: project.appendingPathComponent("weights/w.bin"))
    return project
}

@Suite("version identity is content, not metadata")
struct DeterminismTests {
    @Test("same project, different mtimes, owners, modes and creation order: same version id")
    func sameContentSameVersion() throws {
        let first = try makeModelProject()
        // The copy is made file by file in reverse order, then its metadata is scrambled.
        let second = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-copy-\(UUID().uuidString)")
        let files = try FileManager.default.subpathsOfDirectory(atPath: first.path).sorted().reversed()
        for path in files {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: first.appendingPathComponent(path).path, isDirectory: &isDirectory)
            let target = second.appendingPathComponent(path)
            if isDirectory.boolValue {
                try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            } else {
                try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: first.appendingPathComponent(path), to: target)
            }
        }
        try TestSupport.run("touch", ["-d", "2001-02-03 04:05:06", second.appendingPathComponent("predict.py").path,
                                      second.appendingPathComponent("weights/w.bin").path])
        try TestSupport.run("chmod", ["-R", "go-rwx", second.path])
        try TestSupport.run("chown", ["-R", "65534:65534", second.path])

        let (_, a) = try buildFresh(first)
        let (_, b) = try buildFresh(second)
        #expect(a.version.count == 64)
        #expect(a.version == b.version)
        #expect(a.layers.map(\.digest) == b.layers.map(\.digest))
        #expect(a.manifest == b.manifest)
    }

    @Test("one changed byte of code or of a weight gives a new version")
    func oneByteChanges() throws {
        let project = try makeModelProject()
        let (_, original) = try buildFresh(project)

        let code = project.appendingPathComponent("utils/helper.py")
        try Data("VALUE = 2\n".utf8).write(to: code)
        let (_, codeChanged) = try buildFresh(project)
        #expect(codeChanged.version != original.version)
        try Data("VALUE = 1\n".utf8).write(to: code)

        let weights = project.appendingPathComponent("weights/w.bin")
        var bytes = try Data(contentsOf: weights)
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: weights)
        let (_, weightChanged) = try buildFresh(project)
        #expect(weightChanged.version != original.version)
        #expect(weightChanged.layers[0].digest == original.layers[0].digest, "only the weight layer changes")
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: weights)
        #expect(try buildFresh(project).1.version == original.version)
    }

    @Test("ignored files and weights stay out of the code layer; bsdtar reads it")
    func bsdtarListsCodeLayer() throws {
        let project = try makeModelProject()
        let (store, result) = try buildFresh(project)
        let listing = try TestSupport.run("bsdtar", ["-tvf", store.blobURL(result.layers[0].digest).path])
        #expect(listing.status == 0)
        let lines = listing.output.split(separator: "\n").map(String.init)
        let names = lines.map { $0.split(separator: " ").last.map(String.init) ?? "" }
        #expect(names == [".latheignore", "lathe.yaml", "predict.py", "utils/", "utils/helper.py", "weights/"])
        for line in lines {
            #expect(line.contains(" 0 0 "), "uid/gid 0 with no names: \(line)")
            #expect(line.contains("1970"), "mtime 0: \(line)")
        }
        #expect(result.layers.filter { $0.role == "weights" }.map(\.path) == ["weights/extra/a.bin", "weights/extra/b.bin", "weights/w.bin"])
        let gzipHeader = try Data(contentsOf: store.blobURL(result.layers[0].digest)).prefix(10)
        #expect(Array(gzipHeader[4..<8]) == [0, 0, 0, 0], "gzip header carries no timestamp")
    }

    @Test("weights blobs are raw: their digest is the file's sha256")
    func weightsAreRaw() throws {
        let project = try makeModelProject()
        let (_, result) = try buildFresh(project)
        let sum = try TestSupport.run("sha256sum", [project.appendingPathComponent("weights/w.bin").path])
        let expected = String(sum.output.prefix(64))
        #expect(result.layers.first { $0.path == "weights/w.bin" }?.digest.hex == expected)
        #expect(result.layers.first { $0.path == "weights/w.bin" }?.mediaType == MediaType.weightsLayer)
    }

    @Test("an unchanged rebuild reuses weights without reading them")
    func statCacheReuse() throws {
        let project = try makeModelProject()
        let store = try LocalStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("lathe-store-\(UUID().uuidString)"))
        let cache = StatCache(url: store.root.appendingPathComponent("stat-cache.json"))
        let spec = try SpecParser.load(project: project)
        let builder = ModelBuilder(store: store, cache: cache)
        let first = try builder.build(project: project, spec: spec, refName: "acme/model:latest")
        let second = try builder.build(project: project, spec: spec, refName: "acme/model:latest")
        #expect(first.version == second.version)
        #expect(first.layers.filter { $0.role == "weights" }.allSatisfy { !$0.reused })
        #expect(second.layers.filter { $0.role == "weights" }.allSatisfy { $0.reused })
    }
}
