import Foundation
import LatheTestSupport
import Testing
@testable import LatheArchive
@testable import LatheSpec

@Suite("versions made by training")
struct TrainedVersionTests {
    @Test("a trained version is the base plus the trained files, first among the weights, in the same place in config and manifest")
    func trained() throws {
        let project = try makeModelProject(weightsSize: 64)
        defer { try? FileManager.default.removeItem(at: project) }
        let (store, built) = try buildFresh(project)
        let base = try store.resolve(try #require(built.reference))
        let weights = try TestSupport.makeProject(["out/w.bin": "tuned", "more/w.bin": "also", "more/x.bin": "x"])
        defer { try? FileManager.default.removeItem(at: weights) }
        let builder = ModelBuilder(store: store, cache: nil)

        let one = try builder.trained(from: base, files: [weights.appendingPathComponent("out/w.bin")], refName: "acme/model:tuned")
        let image = try store.resolve("acme/model:tuned")
        #expect(image.version.hex == one.version && one.version != built.version)
        #expect(image.config.spec.weights.map(\.path) == ["trained/w.bin"] + base.config.spec.weights.map(\.path))
        #expect(image.config.layers.map(\.path) == [".", "trained/w.bin"] + base.config.layers.dropFirst().map(\.path))
        #expect(image.manifest.layers.map(\.digest) == [base.manifest.layers[0].digest, image.config.layers[1].digest]
                    + base.manifest.layers.dropFirst().map(\.digest))
        #expect(try store.readBlob(image.config.layers[1].digest) == Data("tuned".utf8))
        #expect(image.config.spec.train == base.config.spec.train && image.config.requirements == base.config.requirements)

        // Trained again: a folder of its own, so the first training's weights stay in place.
        let twice = try builder.trained(from: image, files: [weights.appendingPathComponent("more/w.bin"), weights.appendingPathComponent("more/x.bin")],
                                        refName: "acme/model:twice")
        let again = try store.resolve("acme/model:twice")
        #expect(again.version.hex == twice.version)
        #expect(again.config.spec.weights.map(\.path).prefix(2) == ["trained-2", "trained/w.bin"])
        #expect(again.config.layers.map(\.path).prefix(4) == [".", "trained-2/w.bin", "trained-2/x.bin", "trained/w.bin"])

        #expect(throws: ArchiveError.self) { try builder.trained(from: base, files: [], refName: "acme/model:none") }
        #expect(throws: ArchiveError.self) {
            try builder.trained(from: base, files: [weights.appendingPathComponent("out/w.bin"), weights.appendingPathComponent("more/w.bin")], refName: "acme/model:dup")
        }
    }
}
