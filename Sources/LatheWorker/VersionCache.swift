import Foundation
import LatheArchive
import LatheClient
import LatheRunner

/// The versions a worker has pulled, shared by its instances: a local store of verified blobs
/// (every digest checked on the way in) plus each version unpacked once. Bounded by a size:
/// after a pull, the least recently used versions no instance runs are removed until the store
/// fits again.
actor VersionCache {
    let store: LocalStore
    /// Where versions are unpacked (`instances/<hex>`), and environments built.
    let home: URL
    let limit: Int64
    private var lastUsed: [String: Date] = [:]
    private var inUse: [String: Int] = [:]
    /// Pulls in flight, so two boots of one version download it once.
    private var pulls: [String: Task<LocalStore.Image, any Error>] = [:]

    init(folder: URL, limit: Int64) throws {
        store = try LocalStore(root: folder.appendingPathComponent("store"))
        home = folder
        self.limit = limit
        for image in (try? store.images()) ?? [] { lastUsed[image.version.hex] = .distantPast }
    }

    /// Version ids (hex) held now.
    var cached: [String] { ((try? store.images()) ?? []).map(\.version.hex) }

    /// The version, pulled unless cached, unpacked, and marked in use until ``release(_:)``.
    /// Returns whether it was already cached.
    func acquire(_ version: WorkerVersion, client: RegistryClient) async throws -> (PreparedModel, cached: Bool) {
        let tagName = "v-" + version.manifestDigest.dropFirst("sha256:".count).prefix(16)
        let reference = "\(version.repository):\(tagName)"
        let key = version.manifestDigest
        inUse[key, default: 0] += 1
        do {
            var wasCached = true
            let image: LocalStore.Image
            if let found = try? store.resolve(reference), found.manifestDescriptor.digest.description == version.manifestDigest {
                image = found
            } else {
                wasCached = false
                let store = self.store
                let pull = pulls[key] ?? Task { try await client.pull(repository: version.repository, reference: version.manifestDigest, into: store, tag: tagName) }
                pulls[key] = pull
                defer { pulls.removeValue(forKey: key) }
                image = try await pull.value
            }
            lastUsed[image.version.hex] = Date()
            let (store, home) = (self.store, self.home)
            let prepared = try await onOwnThread { try PreparedModel.image(image, store: store, home: home) }
            if !wasCached { evict() }
            return (prepared, wasCached)
        } catch {
            inUse[key, default: 1] -= 1
            throw error
        }
    }

    /// The version is no longer run by one instance.
    func release(_ version: WorkerVersion) {
        inUse[version.manifestDigest, default: 1] -= 1
        if inUse[version.manifestDigest] == 0 { inUse.removeValue(forKey: version.manifestDigest) }
        if let image = try? store.images().first(where: { $0.manifestDescriptor.digest.description == version.manifestDigest }) {
            lastUsed[image.version.hex] = Date()
        }
    }

    /// Bytes of blobs in the store.
    func size() -> Int64 {
        let blobs = store.root.appendingPathComponent("blobs")
        guard let walker = FileManager.default.enumerator(at: blobs, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total: Int64 = 0
        for case let url as URL in walker { total += Int64((try? url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0) }
        return total
    }

    /// Removes least recently used versions that no instance runs until the store fits.
    func evict() {
        guard size() > limit else { return }
        let images = (try? store.images()) ?? []
        let idle = images.filter { inUse[$0.manifestDescriptor.digest.description] == nil }
            .sorted { (lastUsed[$0.version.hex] ?? .distantPast) < (lastUsed[$1.version.hex] ?? .distantPast) }
        for image in idle {
            guard size() > limit else { return }
            if let name = image.refName { _ = try? store.remove(name) }
            try? store.collectGarbage()
            try? FileManager.default.removeItem(at: home.appendingPathComponent("instances/\(image.version.hex)"))
            lastUsed.removeValue(forKey: image.version.hex)
        }
    }
}
