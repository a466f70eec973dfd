import Foundation
import LatheSpec

extension ModelBuilder {
    /// The version a training of `base` makes (DESIGN §5, Trainings): the base's code layer,
    /// environment and weights as they are, plus the trained `files` as new weights blobs under
    /// `trained/`. The trained weights come first among the spec's `weights`, so `setup(weights)`
    /// is handed them, as a trained version's setup is on Replicate; code that opens the base's
    /// own weights by path still finds them. Tagged `refName`.
    public func trained(from base: LocalStore.Image, files: [URL], refName: String) throws -> Result {
        guard !files.isEmpty else {
            throw ArchiveError("the training returned no file to make a version from; train must return its weights as a Path (or TrainingOutput(weights=Path(...)))")
        }
        let taken = base.config.layers.map(\.path)
        var folder = "trained"
        var suffix = 1
        while taken.contains(where: { $0 == folder || $0.hasPrefix(folder + "/") }) {
            suffix += 1
            folder = "trained-\(suffix)"
        }
        var layers: [ModelConfig.Layer] = []
        var descriptors: [Descriptor] = []
        var summary: [Result.Layer] = []
        var names = Set<String>()
        for file in files {
            let name = file.lastPathComponent
            guard names.insert(name).inserted else {
                throw ArchiveError("the training returned two files named \(name); give its outputs distinct names")
            }
            let path = folder + "/" + name
            let imported = try store.importFile(file, cache: nil)
            layers.append(.init(role: "weights", path: path, digest: imported.digest, size: imported.size))
            descriptors.append(Descriptor(mediaType: MediaType.weightsLayer, digest: imported.digest, size: imported.size,
                                          annotations: [Annotation.role: "weights", Annotation.title: path]))
            summary.append(.init(role: "weights", path: path, mediaType: MediaType.weightsLayer, digest: imported.digest,
                                 size: imported.size, reused: imported.reused))
        }
        // Config and manifest list layers in the same order (a registry checks them pairwise):
        // the trained ones go right after the code layer in both.
        guard let code = base.config.layers.firstIndex(where: { $0.role == "code" }), code < base.manifest.layers.count,
              base.manifest.layers[code].mediaType == MediaType.codeLayer else {
            throw ArchiveError("version \(base.version.hex.prefix(12)) has no code layer to train from; rebuild it with `lathe build`")
        }
        var config = base.config
        config.spec.weights.insert(WeightsSpec(path: files.count == 1 ? layers[0].path : folder), at: 0)
        config.layers.insert(contentsOf: layers, at: code + 1)
        var manifestLayers = base.manifest.layers
        manifestLayers.insert(contentsOf: descriptors, at: code + 1)
        let configDescriptor = try store.writeBlob(JSON.canonical(config), mediaType: MediaType.config)
        let manifest = Manifest(config: configDescriptor, layers: manifestLayers, annotations: base.manifest.annotations)
        let manifestDescriptor = try store.writeManifest(manifest)
        try store.tag(manifestDescriptor, as: refName)
        return Result(version: configDescriptor.digest.hex, reference: refName, manifest: manifestDescriptor.digest,
                      config: configDescriptor.digest, layers: summary)
    }
}
