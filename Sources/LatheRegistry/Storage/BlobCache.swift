import Foundation
import LatheArchive
import NIOCore

/// Registry blobs as files on this machine, for what needs a file (unpacking a version,
/// inflating a code layer): the store's own file where it keeps one, else a copy in a local
/// content-addressed folder, hashed as it is written and kept only when it matches its digest,
/// so bytes altered in the bucket are never used as the blob.
public struct BlobCache: Sendable {
    let store: any BlobStore
    let folder: URL

    public init(store: any BlobStore, folder: URL) {
        self.store = store
        self.folder = folder
    }

    public func file(for digest: Digest) async throws -> URL {
        if let local = store.localFile(.blob(digest)) { return local }
        let target = folder.appendingPathComponent("sha256/\(digest.hex)")
        if FileManager.default.fileExists(atPath: target.path) { return target }
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = folder.appendingPathComponent(".download-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil), let handle = FileHandle(forWritingAtPath: temporary.path) else {
            throw RegistryError(500, "cannot write to the blob cache at \(folder.path)")
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
            throw RegistryError(500, "blob \(digest) in the blob store has the digest \(actual): its bytes were altered; push the version again",
                                code: "BLOB_UNKNOWN")
        }
        guard rename(temporary.path, target.path) == 0 else { throw RegistryError(500, "cannot keep \(digest) in the blob cache") }
        return target
    }
}
