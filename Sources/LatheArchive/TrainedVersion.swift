import Foundation
import LatheSpec

extension ModelConfig {
    /// The config a training of version `base` runs under: the same layers and environment,
    /// the training's spec (``ModelSpec/training``), and the role that makes the runner call
    /// `train`. Nil when the model declares no `train:`.
    public func forTraining(of base: String) -> ModelConfig? {
        guard let training = spec.training else { return nil }
        var config = ModelConfig(spec: training, openapiSchema: OpenAPISchema.document(for: training), requirements: requirements, layers: layers)
        config.role = .train
        config.trainingOf = base
        return config
    }

    /// One trained file as it becomes a weights layer: its name and its blob.
    public struct TrainedFile: Sendable {
        public var name: String
        public var digest: Digest
        public var size: Int64

        public init(name: String, digest: Digest, size: Int64) {
            self.name = name
            self.digest = digest
            self.size = size
        }
    }

    /// The version a training of this config (with `manifest`) makes (DESIGN §5, Trainings):
    /// the base's code layer, environment and weights as they are, plus the trained `files` as
    /// new weights layers under `trained/` (`trained-2/` … when trained again). The trained
    /// weights come first among the spec's `weights`, so `setup(weights)` is handed them, as a
    /// trained version's setup is on Replicate; code that opens the base's own weights by path
    /// still finds them. Config and manifest list layers in the same order (a registry checks
    /// them pairwise): the trained ones go right after the code layer in both. The manifest's
    /// config descriptor is left for the caller, who stores the config.
    public func trained(manifest: Manifest, files: [TrainedFile]) throws -> (config: ModelConfig, layers: [Descriptor], added: [Layer]) {
        guard !files.isEmpty else {
            throw ArchiveError("the training returned no file to make a version from; train must return its weights as a Path (or TrainingOutput(weights=Path(...)))")
        }
        guard Set(files.map(\.name)).count == files.count else {
            throw ArchiveError("the training returned two files with the same name; give its outputs distinct names")
        }
        guard let code = layers.firstIndex(where: { $0.role == "code" }), code < manifest.layers.count,
              manifest.layers[code].mediaType == MediaType.codeLayer else {
            throw ArchiveError("the version has no code layer to train from; rebuild it with `lathe build`")
        }
        var folder = "trained"
        var suffix = 1
        while layers.contains(where: { $0.path == folder || $0.path.hasPrefix(folder + "/") }) {
            suffix += 1
            folder = "trained-\(suffix)"
        }
        let added = files.map { Layer(role: "weights", path: folder + "/" + $0.name, digest: $0.digest, size: $0.size) }
        var config = self
        config.role = nil
        config.trainingOf = nil
        config.spec.weights.insert(WeightsSpec(path: files.count == 1 ? added[0].path : folder), at: 0)
        config.layers.insert(contentsOf: added, at: code + 1)
        var descriptors = manifest.layers
        descriptors.insert(contentsOf: added.map {
            Descriptor(mediaType: MediaType.weightsLayer, digest: $0.digest, size: $0.size, annotations: [Annotation.role: "weights", Annotation.title: $0.path])
        }, at: code + 1)
        return (config, descriptors, added)
    }
}

extension ModelBuilder {
    /// A version made by training `base` (``ModelConfig/trained(manifest:files:)``) from the
    /// trained files on disk, stored and tagged `refName` in the local store.
    public func trained(from base: LocalStore.Image, files: [URL], refName: String) throws -> Result {
        var trained: [ModelConfig.TrainedFile] = []
        var reused: [Bool] = []
        for file in files {
            let imported = try store.importFile(file, cache: nil)
            trained.append(.init(name: file.lastPathComponent, digest: imported.digest, size: imported.size))
            reused.append(imported.reused)
        }
        let (config, layers, added) = try base.config.trained(manifest: base.manifest, files: trained)
        let summary = zip(added, reused).map { layer, reused in
            Result.Layer(role: "weights", path: layer.path, mediaType: MediaType.weightsLayer, digest: layer.digest, size: layer.size, reused: reused)
        }
        let configDescriptor = try store.writeBlob(JSON.canonical(config), mediaType: MediaType.config)
        let manifest = Manifest(config: configDescriptor, layers: layers, annotations: base.manifest.annotations)
        let manifestDescriptor = try store.writeManifest(manifest)
        try store.tag(manifestDescriptor, as: refName)
        return Result(version: configDescriptor.digest.hex, reference: refName, manifest: manifestDescriptor.digest,
                      config: configDescriptor.digest, layers: summary)
    }
}
