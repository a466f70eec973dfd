import Foundation
import LatheTestSupport
import Testing
@testable import LatheArchive
@testable import LatheSpec

@Suite("the local store is an OCI image layout")
struct LocalStoreTests {
    @Test("skopeo copies a version out of the store with the oci: transport")
    func skopeoCopies() throws {
        let (store, result) = try buildFresh(try makeModelProject())
        let destination = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-skopeo-\(UUID().uuidString)")
        let copy = try TestSupport.run("skopeo", ["copy", "oci:\(store.root.path):acme/model:latest", "oci:\(destination.path):copied"])
        #expect(copy.status == 0, "\(copy.stderrText)")
        let raw = try TestSupport.run("skopeo", ["inspect", "--raw", "oci:\(destination.path):copied"])
        #expect(raw.stdout == (try store.readBlob(result.manifest)), "the manifest is copied byte for byte")
        for layer in result.layers {
            #expect(FileManager.default.fileExists(atPath: destination.appendingPathComponent("blobs/sha256/\(layer.digest.hex)").path))
        }
    }

    @Test("an exported layout tar is self-contained and readable by skopeo")
    func exportTar() throws {
        let (store, result) = try buildFresh(try makeModelProject())
        let tar = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-export-\(UUID().uuidString).tar")
        try store.export(try store.resolve("acme/model"), refName: "acme/model:latest", to: tar)
        let inspect = try TestSupport.run("skopeo", ["inspect", "--raw", "oci-archive:\(tar.path):acme/model:latest"])
        #expect(inspect.status == 0, "\(inspect.stderrText)")
        #expect(inspect.stdout == (try store.readBlob(result.manifest)))
    }

    @Test("references resolve by name, tag, version prefix and manifest digest")
    func resolve() throws {
        let (store, result) = try buildFresh(try makeModelProject())
        #expect(try store.resolve("acme/model").version.hex == result.version)
        #expect(try store.resolve("acme/model:latest").version.hex == result.version)
        #expect(try store.resolve(String(result.version.prefix(12))).version.hex == result.version)
        #expect(try store.resolve("acme/model@\(result.manifest)").version.hex == result.version)
        #expect(throws: ArchiveError.self) { try store.resolve("acme/other") }
        #expect(throws: ArchiveError.self) { try store.resolve("Not A Name") }
    }

    @Test("rm untags and deletes blobs nothing else uses")
    func removeCollectsGarbage() throws {
        let (store, result) = try buildFresh(try makeModelProject())
        let second = try store.resolve("acme/model")
        try store.tag(second.manifestDescriptor, as: "acme/model:v1")
        #expect(try store.remove("acme/model:latest") == ["acme/model:latest"])
        #expect(store.hasBlob(result.config), "still tagged v1")
        #expect(try store.remove(String(result.version.prefix(12))) == ["acme/model:v1"])
        #expect(!store.hasBlob(result.config))
        #expect(result.layers.allSatisfy { !store.hasBlob($0.digest) })
        #expect(try store.images().isEmpty)
    }
}

@Suite(".latheignore rules")
struct IgnoreRulesTests {
    @Test("gitignore syntax: globs, anchors, folders, negation, **")
    func rules() {
        let rules = IgnoreRules("*.log\n/build/\ndata/**/*.csv\n!keep.log\ncache/\n")
        #expect(rules.isIgnored("app.log", isDirectory: false))
        #expect(rules.isIgnored("sub/app.log", isDirectory: false))
        #expect(!rules.isIgnored("keep.log", isDirectory: false))
        #expect(rules.isIgnored("build", isDirectory: true))
        #expect(!rules.isIgnored("src/build", isDirectory: true))
        #expect(rules.isIgnored("data/a/b/x.csv", isDirectory: false))
        #expect(rules.isIgnored("data/x.csv", isDirectory: false))
        #expect(rules.isIgnored("deep/cache", isDirectory: true))
        #expect(!rules.isIgnored("cache", isDirectory: false))
        #expect(rules.isIgnored("__pycache__", isDirectory: true))
        #expect(rules.isIgnored(".git", isDirectory: true))
        #expect(!rules.isIgnored("predict.py", isDirectory: false))
    }
}
