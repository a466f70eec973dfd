import Foundation
import LatheArchive
import LatheSpec

/// A model's code and weights laid out on disk, ready for a runner: either a project folder as
/// it is, or a stored version unpacked once per version id.
public struct PreparedModel: Sendable {
    public var spec: ModelSpec
    /// Folder holding the code with the weights in place.
    public var directory: URL
    public var requirements: [String]
    /// What runs: the model's predictions, or (``training()``) its `train:` entry point.
    public var role = EntryRole.predict

    /// The same model, running its `train:` entry point with the training's inputs
    /// (``ModelSpec/training``); nil when it declares no `train:`.
    public func training() -> PreparedModel? {
        guard let spec = spec.training else { return nil }
        var model = self
        model.spec = spec
        model.role = .train
        return model
    }

    /// A project folder, run in place (the author's edit-and-predict loop).
    public static func project(_ directory: URL, spec: ModelSpec) throws -> PreparedModel {
        PreparedModel(spec: spec, directory: directory, requirements: try ModelBuilder.requirements(spec, project: directory))
    }

    /// A version from the local store, unpacked safely under `$LATHE_HOME/instances/<version>`;
    /// weights are hard links to the (read-only) blobs, so nothing large is copied.
    public static func image(_ image: LocalStore.Image, store: LocalStore, home: URL) throws -> PreparedModel {
        try unpack(version: image.version, manifest: image.manifest, config: image.config, blobURL: store.blobURL,
                   instances: home.appendingPathComponent("instances"))
    }

    /// Unpacks a version whose blobs `blobURL` locates (the local store's or a registry's) into
    /// `instances/<version>`, once; later calls reuse it.
    public static func unpack(version: Digest, manifest: Manifest, config: ModelConfig, blobURL: (Digest) -> URL,
                              instances: URL) throws -> PreparedModel {
        let target = instances.appendingPathComponent(version.hex)
        if !FileManager.default.fileExists(atPath: target.path) {
            try FileManager.default.createDirectory(at: instances, withIntermediateDirectories: true)
            let staging = instances.appendingPathComponent(".\(version.hex).\(UUID().uuidString)")
            guard let code = manifest.layers.first(where: { $0.mediaType == MediaType.codeLayer }) else {
                throw ArchiveError("version \(version.hex.prefix(12)) has no code layer")
            }
            // Code is small: refuse to unpack past 100 times the layer's size (at least 64 MiB,
            // at most 1 GiB), whatever the registry let through.
            let limit = min(max(Int64(64 << 20), code.size.multipliedReportingOverflow(by: 100).partialValue), 1 << 30)
            try SafeExtractor(maxTotalBytes: limit, maxEntries: 100_000).extract(blobURL(code.digest), to: staging)
            do {
                for layer in config.layers where layer.role == "weights" {
                    let destination = staging.appendingPathComponent(try safePath(layer.path))
                    try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
                    let blob = blobURL(layer.digest)
                    if link(blob.path, destination.path) != 0 {
                        try FileManager.default.copyItem(at: blob, to: destination)
                    }
                }
                if rename(staging.path, target.path) != 0 && !FileManager.default.fileExists(atPath: target.path) {
                    throw ArchiveError("cannot move \(staging.path) into place: \(String(cString: strerror(errno)))")
                }
            } catch {
                try? FileManager.default.removeItem(at: staging)
                throw error
            }
            try? FileManager.default.removeItem(at: staging)
        }
        return PreparedModel(spec: config.spec, directory: target, requirements: config.requirements, role: config.role ?? .predict)
    }

    /// Weights paths come from a config that may not be ours: refuse anything leaving the folder.
    private static func safePath(_ path: String) throws -> String {
        let parts = path.split(separator: "/")
        guard !path.hasPrefix("/"), !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else {
            throw ArchiveError("refused weights path \"\(path)\" in the version's config")
        }
        return path
    }

    /// The runner configuration for this model, creating its Python environment if needed (with
    /// `build`, by default in the model's own sandbox with the default limits and policy).
    public func configuration(home: URL, workDirectory: URL, sandbox: Sandbox?, build: EnvironmentBuild? = nil,
                              log: @escaping @Sendable (String) -> Void = { _ in }) throws -> ModelProcess.Configuration {
        let build = build ?? EnvironmentBuild(sandbox: sandbox)
        let environment = try PythonEnvironment.ensure(python: spec.python, requirements: requirements, home: home, build: build, log: log)
        let systemPrefix = try SystemPackages.ensure(spec.systemPackages, home: home, build: build, log: log)
        var configuration = ModelProcess.Configuration(project: directory, entryPoint: spec.predict, environment: environment,
                                                       workDirectory: workDirectory, sandbox: sandbox)
        configuration.safetyChecker = spec.safetyChecker
        configuration.concurrency = max(1, spec.concurrency)
        configuration.role = role
        configuration.systemPrefix = systemPrefix
        if let first = spec.weights.first {
            let root = sandbox == nil ? directory.path : Sandbox.projectMount
            configuration.weights = root + "/" + first.path
        }
        return configuration
    }
}
