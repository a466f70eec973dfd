import Foundation
import LatheArchive
import LatheStore

extension Registry {
    /// A stored version's manifest and config, read from the blob store by the manifest's digest.
    package func versionFiles(manifest digest: String) async throws -> (manifest: Manifest, config: ModelConfig) {
        guard let parsed = Digest(parsing: digest) else { throw CoreError(.failed, "bad manifest digest") }
        let manifest = try JSONDecoder().decode(Manifest.self, from: try await blobs.data(.blob(parsed)))
        return (manifest, try JSONDecoder().decode(ModelConfig.self, from: try await blobs.data(.blob(manifest.config.digest))))
    }
}
