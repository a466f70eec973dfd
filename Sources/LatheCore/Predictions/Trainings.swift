import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import LatheStore

/// Replicate's trainings (DESIGN §5). A training runs on the fleet like a prediction, under a
/// config derived from the version it trains (``ModelConfig/forTraining(of:)``: the same layers
/// and environment, the training's inputs, the runner calling `train`). When it succeeds, the
/// files it returned become a new version of the destination model: the trained version's
/// code, environment and weights plus them (``ModelConfig/trained(manifest:files:)``, as
/// `lathe train -t` makes one locally).
package struct Trainings {
    package let registry: Registry

    package init(registry: Registry) {
        self.registry = registry
    }

    /// The version a training of `version` runs under, stored once as a manifest of the model's
    /// repository (workers pull it like any version) and a version row that no listing or
    /// lookup on a caller's behalf shows. Nil when the version declares no `train:`.
    package func trainingVersion(of model: ModelRecord, _ version: VersionRecord) async throws -> VersionRecord? {
        let (manifest, config) = try await registry.versionFiles(manifest: version.manifestDigest)
        guard let derived = config.forTraining(of: version.id) else { return nil }
        return try await store(derived, layers: manifest.layers, annotations: manifest.annotations, in: model, trainingOf: version.id)
    }

    /// Makes the destination's new version from a succeeded training's files, which lie in
    /// `directory` as `output` names them (`{"$file": NAME}`); returns `owner/name:version`.
    package func publish(_ order: TrainingOrder, modelID: String, output: JSONValue?, from directory: URL) async throws -> String {
        guard let destination = try await registry.models.model(id: order.destinationID) else {
            throw CoreError(.notFound, "the destination model \(order.destination) was deleted while the training ran")
        }
        guard let baseDigest = try await registry.models.manifestDigest(modelID: modelID, version: order.baseVersion) else {
            throw CoreError(.notFound, "the trained version \(order.baseVersion.prefix(12)) was deleted while the training ran")
        }
        let (baseManifest, baseConfig) = try await registry.versionFiles(manifest: baseDigest)
        var files: [ModelConfig.TrainedFile] = []
        for name in Self.fileNames(in: output) {
            // A second name for the file (a link, else a copy), since storing it moves it and the
            // same file is published as the training's `weights` output.
            let file = directory.appendingPathComponent(name), copy = directory.appendingPathComponent(".trained-\(UUID().uuidString)")
            do { try FileManager.default.linkItem(at: file, to: copy) } catch { try FileManager.default.copyItem(at: file, to: copy) }
            defer { try? FileManager.default.removeItem(at: copy) }
            let (digest, size) = try await onOwnThread { try FileHashing.digest(of: copy) }
            if try await registry.blobs.size(of: .blob(digest)) == nil { try await registry.blobs.store(.blob(digest), from: copy) }
            try await registry.models.addBlob(digest.description, size: size, repository: destination.repository)
            files.append(.init(name: name, digest: digest, size: size))
        }
        let (config, layers, _) = try baseConfig.trained(manifest: baseManifest, files: files)
        // The base's layers become the destination's too (as a cross-repository mount would).
        for layer in layers { try await registry.models.linkBlob(layer.digest.description, repository: destination.repository) }
        let made = try await store(config, layers: layers, annotations: baseManifest.annotations, in: destination)
        try await registry.models.setTag(repository: destination.repository, tag: "latest", digest: made.manifestDigest)
        return "\(destination.repository):\(made.id)"
    }

    /// Stores `config` and a manifest of `layers` as a version of `model` (with `trainingOf`,
    /// one no listing shows), as a push of a version made by `lathe build` would. The schema is
    /// the registry's own, made from the spec (a base config's came from whoever pushed it).
    private func store(_ config: ModelConfig, layers: [Descriptor], annotations: [String: String]?, in model: ModelRecord,
                       trainingOf: String? = nil) async throws -> VersionRecord {
        var config = config
        config.openapiSchema = OpenAPISchema.document(for: config.spec)
        let configData = try JSON.canonical(config)
        let configDigest = try await registry.blobs.storeBlob(configData)
        try await registry.models.addBlob(configDigest.description, size: Int64(configData.count), repository: model.repository)
        let manifest = Manifest(config: Descriptor(mediaType: MediaType.config, digest: configDigest, size: Int64(configData.count)),
                                layers: layers, annotations: annotations)
        let manifestData = try JSON.canonical(manifest)
        let manifestDigest = try await registry.blobs.storeBlob(manifestData)
        try await registry.models.addManifest(repository: model.repository, digest: manifestDigest.description, mediaType: MediaType.imageManifest,
                                              size: manifestData.count)
        let schema = String(decoding: try JSON.canonical(config.openapiSchema), as: UTF8.self)
        try await registry.models.addVersion(model, id: configDigest.hex, manifestDigest: manifestDigest.description, openapiSchema: schema,
                                             trainingOf: trainingOf)
        return VersionRecord(id: configDigest.hex, manifestDigest: manifestDigest.description, openapiSchema: schema, createdAt: Timestamp.now())
    }

    /// The names of the files an output names (`{"$file": NAME}`), in order.
    static func fileNames(in value: JSONValue?) -> [String] {
        switch value {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue, BlobKey.isPlainName(name) { return [name] }
            return object.keys.sorted().flatMap { fileNames(in: object[$0]) }
        case .array(let items): return items.flatMap { fileNames(in: $0) }
        default: return []
        }
    }
}
