import AsyncHTTPClient
import Foundation
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat

extension RegistryClient {
    /// What a push did; mirrors `lathe push --json`.
    public struct PushResult: Codable, Sendable {
        public var version: String
        public var model: String
        public var url: String
        public var manifest: String
        public var bytesUploaded: Int64
        public var blobsUploaded: Int
        public var blobsSkipped: Int
        public var blobsMounted: Int

        enum CodingKeys: String, CodingKey {
            case version, model, url, manifest
            case bytesUploaded = "bytes_uploaded"
            case blobsUploaded = "blobs_uploaded"
            case blobsSkipped = "blobs_skipped"
            case blobsMounted = "blobs_mounted"
        }
    }

    /// Progress of one blob: (digest, bytes sent, total).
    public typealias Progress = @Sendable (Digest, Int64, Int64) -> Void

    /// Pushes a stored version to `repository` (`owner/name`) under `tag`: blobs the registry has
    /// are skipped, blobs it holds elsewhere are mounted, the rest are uploaded in chunks, several
    /// at once, resuming an upload a previous run left unfinished.
    public func push(_ image: LocalStore.Image, store: LocalStore, repository: String, tag: String, journal: UploadJournal,
                     history: PushHistory? = nil, chunkSize: Int64 = 64 << 20, parallel: Int = 3, progress: Progress? = nil) async throws -> PushResult {
        let descriptors = image.manifest.layers + [image.manifest.config]
        let counters = PushCounters()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for descriptor in descriptors {
                if running >= parallel { try await group.next(); running -= 1 }
                group.addTask {
                    let mountFrom = history?.repositories(holding: descriptor.digest, on: self.base) ?? []
                    try await self.pushBlob(descriptor, from: store, repository: repository, journal: journal, mountFrom: mountFrom,
                                            chunkSize: chunkSize, counters: counters, progress: progress)
                }
                running += 1
            }
            try await group.waitForAll()
        }
        let manifest = try store.readBlob(image.manifestDescriptor.digest)
        let reply = try await send(.PUT, "/v2/\(repository)/manifests/\(tag)", headers: [("Content-Type", image.manifest.mediaType)],
                                   body: .bytes(ByteBuffer(data: manifest)), expect: [201])
        let digest = reply.header("Docker-Content-Digest") ?? image.manifestDescriptor.digest.description
        guard digest == image.manifestDescriptor.digest.description else {
            throw Failure(method: "PUT", url: url("/v2/\(repository)/manifests/\(tag)"), status: reply.status,
                          message: "the registry stored the manifest as \(digest), not \(image.manifestDescriptor.digest)")
        }
        history?.record(descriptors.map(\.digest), repository: repository, on: base)
        let totals = counters.snapshot()
        return PushResult(version: image.version.hex, model: repository, url: "\(base)/\(repository)", manifest: digest,
                          bytesUploaded: totals.bytes, blobsUploaded: totals.uploaded, blobsSkipped: totals.skipped, blobsMounted: totals.mounted)
    }

    private func pushBlob(_ descriptor: Descriptor, from store: LocalStore, repository: String, journal: UploadJournal, mountFrom: [String],
                          chunkSize: Int64, counters: PushCounters, progress: Progress?) async throws {
        let digest = descriptor.digest
        if try await send(.HEAD, "/v2/\(repository)/blobs/\(digest)").status == 200 {
            counters.add(skipped: 1)
            return
        }
        for source in mountFrom where source != repository {
            let reply = try await send(.POST, "/v2/\(repository)/blobs/uploads/?mount=\(digest)&from=\(source)")
            if reply.status == 201 { counters.add(skipped: 1, mounted: 1); return }
            if reply.status == 202, let location = reply.header("Location") {
                // The registry opened a plain session instead; close it, we open our own.
                _ = try? await send(.DELETE, location)
            }
        }
        let path = store.blobURL(digest).path
        let size = descriptor.size
        let key = UploadJournal.key(base: base, repository: repository, digest: digest)
        var location: String
        var offset: Int64 = 0
        if let saved = journal.location(for: key), let status = try? await send(.GET, saved), status.status == 204 {
            location = status.header("Location") ?? saved
            offset = Self.nextOffset(status.header("Range"))
        } else {
            // Named at the start (Lathe's extension), so a registry on S3 assembles the parts at the
            // blob's own key instead of copying them there at the end; other registries ignore it.
            let opened = try await send(.POST, "/v2/\(repository)/blobs/uploads/", headers: [("Lathe-Upload-Digest", digest.description)], expect: [202])
            guard let value = opened.header("Location") else {
                throw Failure(method: "POST", url: url("/v2/\(repository)/blobs/uploads/"), status: 202, message: "no Location header")
            }
            location = value
            journal.save(location, for: key)
        }
        let report: @Sendable (Int64) -> Void = { _ in }
        var sentTotal = offset
        // How long to wait for another writer's lease on this upload (the registry's is 15 s).
        let lockedUntil = Date().addingTimeInterval(30)
        while offset < size {
            let end = min(offset + chunkSize, size)
            let chunk = FileChunks(path: path, range: offset..<end, progress: { count in
                counters.add(bytes: count)
                report(count)
            })
            let reply: Reply
            do {
                reply = try await send(.PATCH, location, headers: [("Content-Type", "application/octet-stream"),
                                                                   ("Content-Range", "\(offset)-\(end - 1)")],
                                       body: .stream(chunk, length: .known(end - offset)))
            } catch {
                throw Failure(method: "PATCH", url: url(location), status: 0,
                              message: "upload of \(digest) interrupted at \(offset) of \(size) bytes (\(error)); run `lathe push` again to resume")
            }
            if reply.status == 409, Date() < lockedUntil {
                // Another request holds the upload (one writer at a time): usually the request a
                // registry that died was serving, whose lease lapses within seconds. Wait for it.
                try await Task.sleep(nanoseconds: 1_000_000_000)
                let status = try await send(.GET, location, expect: [204])
                offset = Self.nextOffset(status.header("Range"))
                location = status.header("Location") ?? location
                continue
            }
            if reply.status == 416 {
                // Out of step with the registry: ask where it is and continue from there.
                let status = try await send(.GET, location, expect: [204])
                offset = Self.nextOffset(status.header("Range"))
                location = status.header("Location") ?? location
                continue
            }
            guard reply.status == 202 else {
                throw Failure(method: "PATCH", url: url(location), status: reply.status, message: Self.message(reply))
            }
            location = reply.header("Location") ?? location
            journal.save(location, for: key)
            offset = max(end, Self.nextOffset(reply.header("Range")))
            sentTotal = offset
            progress?(digest, sentTotal, size)
        }
        let separator = location.contains("?") ? "&" : "?"
        try await send(.PUT, location + separator + "digest=\(digest)", headers: [("Content-Length", "0")], expect: [201])
        journal.remove(key)
        counters.add(uploaded: 1)
    }

    /// `Range: 0-N` → N + 1 (the next byte the registry expects).
    static func nextOffset(_ range: String?) -> Int64 {
        guard let range, let end = range.split(separator: "-").last.flatMap({ Int64($0) }) else { return 0 }
        return range == "0-0" ? 0 : end + 1
    }
}

/// Counts shared by the blob uploads of one push.
final class PushCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: Int64 = 0, uploaded = 0, skipped = 0, mounted = 0

    func add(bytes: Int64 = 0, uploaded: Int = 0, skipped: Int = 0, mounted: Int = 0) {
        lock.withLock {
            self.bytes += bytes
            self.uploaded += uploaded
            self.skipped += skipped
            self.mounted += mounted
        }
    }

    func snapshot() -> (bytes: Int64, uploaded: Int, skipped: Int, mounted: Int) {
        lock.withLock { (bytes, uploaded, skipped, mounted) }
    }
}

/// Unfinished upload sessions, so a push that was interrupted resumes where the registry stopped
/// (`$LATHE_HOME/uploads.json`).
public final class UploadJournal: @unchecked Sendable {
    private let url: URL
    private let lock = NSLock()
    private var entries: [String: String]

    public init(home: URL) {
        url = home.appendingPathComponent("uploads.json")
        entries = (FileManager.default.contents(atPath: url.path)).flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
    }

    static func key(base: String, repository: String, digest: Digest) -> String { "\(base) \(repository) \(digest)" }

    func location(for key: String) -> String? { lock.withLock { entries[key] } }

    func save(_ location: String, for key: String) {
        lock.withLock {
            entries[key] = location
            write()
        }
    }

    func remove(_ key: String) {
        lock.withLock {
            entries.removeValue(forKey: key)
            write()
        }
    }

    private func write() {
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? JSONEncoder().encode(entries).write(to: url, options: .atomic)
    }
}

/// Which repositories of which registry received which blobs (`$LATHE_HOME/pushed.json`), so a
/// push to a new repository can mount weights the registry already holds instead of uploading.
public final class PushHistory: @unchecked Sendable {
    private let url: URL
    private let lock = NSLock()
    private var entries: [String: [String: [String]]]

    public init(home: URL) {
        url = home.appendingPathComponent("pushed.json")
        entries = FileManager.default.contents(atPath: url.path).flatMap { try? JSONDecoder().decode([String: [String: [String]]].self, from: $0) } ?? [:]
    }

    func repositories(holding digest: Digest, on base: String) -> [String] {
        lock.withLock { entries[base]?[digest.description] ?? [] }
    }

    func record(_ digests: [Digest], repository: String, on base: String) {
        lock.withLock {
            for digest in digests {
                var known = entries[base]?[digest.description] ?? []
                if !known.contains(repository) { known.append(repository) }
                entries[base, default: [:]][digest.description] = Array(known.suffix(8))
            }
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? JSONEncoder().encode(entries).write(to: url, options: .atomic)
        }
    }
}
