import Foundation
import LatheArchive
import LatheRunner
import NIOCore

/// Registry blobs as files on this machine, for what needs a file (unpacking a version,
/// inflating a code layer): the store's own file where it keeps one, else a copy in a local
/// content-addressed folder, hashed as it is written and kept only when it matches its digest,
/// so bytes altered in the bucket are never used as the blob.
///
/// A store's own file is hashed the first time it is used and the fact kept (with the file's
/// size, inode and change time, so a file replaced since is hashed again): a file that does not
/// hold its digest's bytes is never used or served as that blob.
public struct BlobCache: Sendable {
    package let store: any BlobStore
    package let folder: URL
    private let verified = VerifiedFiles()

    public init(store: any BlobStore, folder: URL) {
        self.store = store
        self.folder = folder
    }

    public func file(for digest: Digest) async throws -> URL {
        if let local = store.localFile(.blob(digest)) {
            try await verify(local, as: digest)
            return local
        }
        let target = folder.appendingPathComponent("sha256/\(digest.hex)")
        if FileManager.default.fileExists(atPath: target.path) { return target }
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = folder.appendingPathComponent(".download-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil), let handle = FileHandle(forWritingAtPath: temporary.path) else {
            throw StoreError(.failed, "cannot write to the blob cache at \(folder.path)")
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        var hasher = DigestWriter()
        do {
            try await store.read(.blob(digest), range: nil) { buffer in
                try buffer.withUnsafeReadableBytes { bytes in
                    hasher.update(bytes)
                    try handle.write(contentsOf: bytes)
                }
            }
            try handle.close()
        } catch {
            try? handle.close()
            throw error
        }
        let actual = hasher.finalize()
        guard actual == digest else {
            throw StoreError(.failed, "blob \(digest) in the blob store has the digest \(actual): its bytes were altered; push the version again",
                                code: "BLOB_UNKNOWN")
        }
        guard rename(temporary.path, target.path) == 0 else { throw StoreError(.failed, "cannot keep \(digest) in the blob cache") }
        return target
    }
}

extension BlobCache {
    /// Checks, once per file version, that the store's own file for `digest` holds its bytes;
    /// nothing to do for stores without local files (their bytes are hashed into the cache).
    public func verifyLocal(_ digest: Digest) async throws {
        if let local = store.localFile(.blob(digest)) { try await verify(local, as: digest) }
    }

    private func verify(_ file: URL, as digest: Digest) async throws {
        guard let identity = VerifiedFiles.identity(of: file.path) else {
            throw StoreError(.notFound, "blob \(digest) is not in the blob store", code: "BLOB_UNKNOWN")
        }
        if verified.contains(digest, identity) { return }
        // Hashing a large blob takes a while: never on a thread of the cooperative pool.
        let actual = try await onOwnThread { try FileHashing.digest(of: file).0 }
        guard actual == digest else {
            throw StoreError(.failed, "blob \(digest) in the blob store has the digest \(actual): its bytes were altered; push the version again",
                                code: "BLOB_UNKNOWN")
        }
        verified.insert(digest, identity)
    }
}

/// Which store files were hashed and found to hold their digest's bytes.
final class VerifiedFiles: @unchecked Sendable {
    struct Identity: Hashable { var size: Int64; var inode: UInt64; var changed: Int64 }
    private let lock = NSLock()
    private var files: [Digest: Identity] = [:]

    package static func identity(of path: String) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Identity(size: Int64(info.st_size), inode: UInt64(info.st_ino),
                        changed: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
    }

    package func contains(_ digest: Digest, _ identity: Identity) -> Bool { lock.withLock { files[digest] == identity } }
    package func insert(_ digest: Digest, _ identity: Identity) { lock.withLock { files[digest] = identity } }
}
