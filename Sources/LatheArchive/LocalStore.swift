import CArchive
import Foundation
import LatheSpec

/// The local store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) that
/// skopeo and other OCI tools read with the `oci:` transport.
public final class LocalStore: @unchecked Sendable {
    /// One model version in the store, resolved.
    public struct Image: Sendable {
        public var refName: String?
        public var manifestDescriptor: Descriptor
        public var manifest: Manifest
        public var config: ModelConfig
        /// The version id: the config digest.
        public var version: Digest { manifest.config.digest }
    }

    public let root: URL

    /// `$LATHE_HOME`, else `$HOME/.lathe`, else the account's home folder's `.lathe`.
    /// (`$HOME` first, as shells do: a service account's passwd entry may name `/nonexistent`.)
    public static var home: URL {
        let environment = ProcessInfo.processInfo.environment
        if let value = environment["LATHE_HOME"], !value.isEmpty {
            return URL(fileURLWithPath: value)
        }
        if let value = environment["HOME"], !value.isEmpty {
            return URL(fileURLWithPath: value).appendingPathComponent(".lathe")
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".lathe")
    }

    /// Opens (creating if needed) the layout at `root`; by default `$LATHE_HOME/store`.
    public init(root: URL = LocalStore.home.appendingPathComponent("store")) throws {
        self.root = root
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: root.appendingPathComponent("blobs/sha256"), withIntermediateDirectories: true)
        let layout = root.appendingPathComponent("oci-layout")
        if !fileManager.fileExists(atPath: layout.path) {
            try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: layout, options: .atomic)
        }
        if !fileManager.fileExists(atPath: indexURL.path) {
            try JSON.canonical(ImageIndex()).write(to: indexURL, options: .atomic)
        }
    }

    var indexURL: URL { root.appendingPathComponent("index.json") }

    // MARK: - Blobs

    public func blobURL(_ digest: Digest) -> URL {
        root.appendingPathComponent("blobs/sha256/\(digest.hex)")
    }

    public func hasBlob(_ digest: Digest) -> Bool {
        FileManager.default.fileExists(atPath: blobURL(digest).path)
    }

    /// A fresh temporary path inside the store, on the same file system as the blobs.
    public func temporaryURL() throws -> URL {
        let directory = root.appendingPathComponent("tmp")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent(UUID().uuidString)
    }

    /// Stores bytes in memory (configs and manifests) and returns their descriptor.
    @discardableResult
    public func writeBlob(_ data: Data, mediaType: String) throws -> Descriptor {
        let digest = Digest.of(data)
        if !hasBlob(digest) {
            let temporary = try temporaryURL()
            try data.write(to: temporary)
            try moveIntoPlace(temporary, digest: digest)
        }
        return Descriptor(mediaType: mediaType, digest: digest, size: Int64(data.count))
    }

    /// Moves a finished temporary file to its content address (a no-op if already there).
    public func moveIntoPlace(_ temporary: URL, digest: Digest) throws {
        let destination = blobURL(digest)
        if hasBlob(digest) {
            try? FileManager.default.removeItem(at: temporary)
            return
        }
        chmod(temporary.path, 0o444)
        guard rename(temporary.path, destination.path) == 0 else {
            throw ArchiveError("cannot store blob \(digest): \(String(cString: strerror(errno)))")
        }
    }

    /// Adds a file as a raw blob: hashed while a kernel copy runs beside it on another core;
    /// unchanged files (by the stat cache) whose blob exists are neither read nor copied.
    public func importFile(_ url: URL, cache: StatCache?, progress: ((Int64) -> Void)? = nil) throws -> (digest: Digest, size: Int64, reused: Bool) {
        if let digest = cache?.digest(for: url), hasBlob(digest), let key = StatCache.key(for: url) {
            return (digest, key.size, true)
        }
        guard let before = StatCache.key(for: url) else { throw ArchiveError("cannot read \(url.path)") }
        let temporary = try temporaryURL()
        nonisolated(unsafe) var copyError: (any Error)?
        let copying = DispatchGroup()
        copying.enter()
        Thread.detachNewThread {
            do { try FileHashing.copy(url, to: temporary) } catch { copyError = error }
            copying.leave()
        }
        let hashed: (Digest, Int64)
        do {
            hashed = try FileHashing.digest(of: url, progress: progress)
        } catch {
            copying.wait()
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        copying.wait()
        if let copyError {
            try? FileManager.default.removeItem(at: temporary)
            throw copyError
        }
        // The hash and the copy read the file separately: refuse if it changed in between.
        guard StatCache.key(for: url) == before, hashed.1 == before.size else {
            try? FileManager.default.removeItem(at: temporary)
            throw ArchiveError("\(url.path) changed while it was being read; build again once it is finished")
        }
        try moveIntoPlace(temporary, digest: hashed.0)
        cache?.remember(hashed.0, for: url, key: before)
        return (hashed.0, hashed.1, false)
    }

    public func readBlob(_ digest: Digest) throws -> Data {
        guard let data = FileManager.default.contents(atPath: blobURL(digest).path) else {
            throw ArchiveError("blob \(digest) is missing from the local store at \(root.path)")
        }
        return data
    }

    // MARK: - Index

    public func index() throws -> ImageIndex {
        try JSONDecoder().decode(ImageIndex.self, from: Data(contentsOf: indexURL))
    }

    /// Changes `index.json` under an exclusive lock, writing it atomically.
    func updateIndex(_ change: (inout ImageIndex) throws -> Void) throws {
        let lockPath = root.appendingPathComponent("index.lock").path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ArchiveError("cannot lock \(lockPath)") }
        defer { close(fd) }
        flock(fd, LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        var index = try self.index()
        try change(&index)
        try JSON.canonical(index).write(to: indexURL, options: .atomic)
    }

    /// Points `refName` (`name:tag`) at a manifest, replacing what it pointed at before.
    public func tag(_ manifest: Descriptor, as refName: String, created: Date = Date()) throws {
        var entry = manifest
        entry.annotations = [Annotation.refName: refName, Annotation.created: ISO8601DateFormatter().string(from: created)]
        try updateIndex { index in
            index.manifests.removeAll { $0.annotations?[Annotation.refName] == refName }
            index.manifests.append(entry)
        }
    }

    /// Stores a manifest blob and returns its descriptor.
    public func writeManifest(_ manifest: Manifest) throws -> Descriptor {
        try writeBlob(JSON.canonical(manifest), mediaType: MediaType.imageManifest)
    }

    public func image(_ descriptor: Descriptor) throws -> Image {
        let manifest = try JSONDecoder().decode(Manifest.self, from: readBlob(descriptor.digest))
        guard manifest.artifactType == MediaType.artifact || manifest.config.mediaType == MediaType.config else {
            throw ArchiveError("\(descriptor.digest) is not a Lathe model (artifact type \(manifest.artifactType ?? manifest.config.mediaType))")
        }
        let config = try JSONDecoder().decode(ModelConfig.self, from: readBlob(manifest.config.digest))
        return Image(refName: descriptor.annotations?[Annotation.refName], manifestDescriptor: descriptor, manifest: manifest, config: config)
    }

    /// Every tagged version, in index order.
    public func images() throws -> [Image] {
        try index().manifests.map { try image($0) }
    }

    /// Finds a version by `name[:tag]`, `name@digest`, or version id (prefix).
    public func resolve(_ text: String) throws -> Image {
        guard let reference = ImageReference(parsing: text) else {
            throw ArchiveError("\"\(text)\" is not a model reference; write owner/name[:tag] or a version id")
        }
        let entries = try index().manifests
        if let refName = reference.refName, let entry = entries.first(where: { $0.annotations?[Annotation.refName] == refName }) {
            return try image(entry)
        }
        if let digest = reference.digest, let entry = entries.first(where: { $0.digest == digest }) {
            return try image(entry)
        }
        if let prefix = reference.versionPrefix {
            let matches = try entries.map { try image($0) }.filter { $0.version.hex.hasPrefix(prefix) || $0.manifestDescriptor.digest.hex.hasPrefix(prefix) }
            let distinct = Set(matches.map(\.version))
            if distinct.count > 1 { throw ArchiveError("\"\(text)\" matches \(distinct.count) versions; give more digits") }
            if let match = matches.first { return match }
        }
        throw ArchiveError("no model \"\(text)\" in the local store; `lathe images` lists what is there")
    }

    /// Untags `text` (all ref names of that version if given by id) and deletes blobs no longer used.
    public func remove(_ text: String) throws -> [String] {
        let image = try resolve(text)
        var removed: [String] = []
        // By name only that tag goes; by version id or digest, every tag of that version goes.
        let byVersion = ImageReference(parsing: text)?.refName != image.refName
        try updateIndex { index in
            index.manifests.removeAll { entry in
                let match = byVersion ? entry.digest == image.manifestDescriptor.digest
                    : entry.annotations?[Annotation.refName] == image.refName
                if match { removed.append(entry.annotations?[Annotation.refName] ?? entry.digest.description) }
                return match
            }
        }
        try collectGarbage()
        return removed
    }

    /// Deletes blobs that no tagged manifest refers to.
    public func collectGarbage() throws {
        var live = Set<Digest>()
        for entry in try index().manifests {
            live.insert(entry.digest)
            if let manifest = try? JSONDecoder().decode(Manifest.self, from: readBlob(entry.digest)) {
                live.insert(manifest.config.digest)
                manifest.layers.forEach { live.insert($0.digest) }
            }
        }
        let directory = root.appendingPathComponent("blobs/sha256")
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            if let digest = Digest(parsing: name), !live.contains(digest) {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
        }
    }

    // MARK: - Export

    /// Writes a self-contained OCI layout holding one version as an uncompressed tar.
    public func export(_ image: Image, refName: String, to output: URL) throws {
        guard let archive = archive_write_new() else { throw ArchiveError("libarchive: out of memory") }
        defer { archive_write_free(archive) }
        archive_write_set_format_pax_restricted(archive)
        guard archive_write_open_filename(archive, output.path) == ARCHIVE_OK else {
            throw ArchiveError.libarchive(archive, "creating \(output.path)")
        }
        var entry = image.manifestDescriptor
        entry.annotations = [Annotation.refName: refName]
        let index = try JSON.canonical(ImageIndex(manifests: [entry]))
        try addData(archive, path: "oci-layout", data: Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8))
        try addData(archive, path: "index.json", data: index)
        let digests = Set([image.manifestDescriptor.digest, image.manifest.config.digest] + image.manifest.layers.map(\.digest)).sorted()
        for digest in digests {
            try addFile(archive, path: "blobs/sha256/\(digest.hex)", source: blobURL(digest))
        }
        guard archive_write_close(archive) == ARCHIVE_OK else { throw ArchiveError.libarchive(archive, "finishing \(output.path)") }
    }

    private func header(_ archive: OpaquePointer, path: String, size: Int64) throws {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname_utf8(entry, path)
        archive_entry_set_filetype(entry, LATHE_AE_IFREG)
        archive_entry_set_perm(entry, 0o644)
        archive_entry_set_size(entry, la_int64_t(size))
        archive_entry_set_mtime(entry, 0, 0)
        guard archive_write_header(archive, entry) == ARCHIVE_OK else { throw ArchiveError.libarchive(archive, "adding \(path)") }
    }

    private func addData(_ archive: OpaquePointer, path: String, data: Data) throws {
        try header(archive, path: path, size: Int64(data.count))
        _ = data.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
    }

    private func addFile(_ archive: OpaquePointer, path: String, source: URL) throws {
        let fd = open(source.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ArchiveError("cannot read \(source.path)") }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        try header(archive, path: path, size: Int64(info.st_size))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileHashing.bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count <= 0 { break }
            guard archive_write_data(archive, buffer.baseAddress, count) == count else { throw ArchiveError.libarchive(archive, "writing \(path)") }
        }
    }
}
