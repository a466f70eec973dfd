import Foundation
import LatheArchive
import LatheRunner
import LatheStore

/// The worker inside `lathe serve` (DESIGN §6: one machine needs nothing else): instances run as
/// this process's children, from versions unpacked out of the registry's own blob store, with no
/// HTTP between deciding and running.
package struct EmbeddedWorker: Sendable {
    /// This machine's folder for environments, unpacked versions and instance work.
    package var runtime: URL
    package var sandbox: Sandbox?
    package var build: EnvironmentBuild
    package var blobCache: BlobCache

    /// Unpacks a version and builds its environment, off the caller's thread, and returns its
    /// model process ready to start. `log` gets the environment build's output as it comes.
    func prepare(_ version: Digest, manifest: Manifest, config: ModelConfig, work: URL, gpus: [GPU] = [],
                 log: @escaping @Sendable (String) -> Void) async throws -> ModelProcess {
        let (runtime, sandbox, build) = (self.runtime, self.sandbox, self.build)
        // The layers as local files (the store's own, or verified copies in the blob cache).
        var files: [Digest: URL] = [:]
        for layer in manifest.layers { files[layer.digest] = try await blobCache.file(for: layer.digest) }
        let layerFiles = files
        // Unpacking and building the environment block a thread for as long as they take
        // (minutes for a large install): they get their own thread, never an actor's.
        let configuration = try await onOwnThread {
            let prepared = try PreparedModel.unpack(version: version, manifest: manifest, config: config,
                                                    blobURL: { layerFiles[$0] ?? URL(fileURLWithPath: "/nonexistent") },
                                                    instances: runtime.appendingPathComponent("instances"))
            var environmentBuild = build
            environmentBuild.sandbox = sandbox
            var configuration = try prepared.configuration(home: runtime, workDirectory: work, sandbox: sandbox, build: environmentBuild, log: log)
            // Whole GPUs, bound into the sandbox exactly as `lathe worker` binds them.
            configuration.gpus = GPUAccess.forInstance(gpus)
            return configuration
        }
        return ModelProcess(configuration)
    }
}
