import Foundation
import LatheArchive
import LatheSpec
import LatheStore

/// Removes what nothing refers to from the blob store, by mark and sweep: registry blobs no
/// manifest names, files no `/v1/files` row names, output files no prediction names (looked up
/// by token in `output_files`, so a run costs what it finds, not every output ever made). Only
/// objects older than `grace` are candidates, so a push or an upload in flight is never
/// harmed; a registry blob a push named during the sweep (it asked for it, mounted it, or a
/// new manifest refers to it) survives, because its row is removed by one conditional
/// statement before its bytes are.
public struct GarbageCollector: Sendable {
    /// What one collection removed (or, dry, would remove).
    public struct Report: Sendable {
        public var removed: [BlobListing] = []
        public var bytes: Int64 { removed.reduce(0) { $0 + $1.size } }
    }

    package let registry: Registry
    /// How old an unreferenced object must be to go.
    public var grace: TimeInterval

    public init(registry: Registry, grace: TimeInterval = 3600) {
        self.registry = registry
        self.grace = grace
    }

    public func collect(dryRun: Bool = false, now: Date = Date()) async throws -> Report {
        let store = registry.blobs
        let cutoff = now.addingTimeInterval(-grace)
        let started = Timestamp.string(now)
        // Listed first: anything stored after this is not even a candidate.
        let candidates = try await (store.list(under: "blobs/") + store.list(under: "files/") + store.list(under: "outputs/"))
            .filter { $0.modified < cutoff }
        var report = Report()
        guard !candidates.isEmpty else { return report }

        // Mark.
        var blobs = try await referencedBlobs(in: registry.models.manifestDigests())
        let files = try await FileStore(database: registry.database).allIDs()
        // Output files: only those found are looked up (by token, in `output_files`), never every output.
        let tokens = Set(candidates.compactMap { $0.key.path.hasPrefix("outputs/") ? $0.key.path.split(separator: "/")[1] : nil }.map(String.init))
        let outputs = try await PredictionStore(database: registry.database).referencedOutputTokens(tokens.sorted())
        // Manifests pushed while marking refer to blobs too.
        blobs.formUnion(try await referencedBlobs(in: registry.models.manifestDigests(since: started)))

        // Sweep.
        for listing in candidates {
            let parts = listing.key.path.split(separator: "/").map(String.init)
            let keep: Bool
            switch parts.first {
            case "blobs":
                guard let digest = Digest(parsing: "sha256:" + parts[2]) else { continue }
                if blobs.contains(digest) {
                    keep = true
                } else if dryRun {
                    keep = false
                } else {
                    keep = try await !registry.models.forgetBlob(digest.description, untouchedSince: Timestamp.string(cutoff))
                }
            case "files":
                keep = files.contains(parts[1])
            default:
                keep = outputs.contains(parts[1])
            }
            if keep { continue }
            if !dryRun { try await store.delete(listing.key) }
            report.removed.append(listing)
        }
        return report
    }

    /// The manifests themselves and every blob they name (config and layers).
    private func referencedBlobs(in manifests: Set<String>) async throws -> Set<Digest> {
        var referenced = Set<Digest>()
        for text in manifests {
            guard let digest = Digest(parsing: text) else { continue }
            referenced.insert(digest)
            // A manifest whose bytes are gone names nothing more that can be read.
            guard let data = try? await registry.blobs.data(.blob(digest)),
                  let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { continue }
            referenced.insert(manifest.config.digest)
            for layer in manifest.layers { referenced.insert(layer.digest) }
        }
        return referenced
    }
}
