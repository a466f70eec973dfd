import Foundation
import Hummingbird
import LatheArchive
import NIOCore

/// Blob and upload files under the data folder: `blobs/sha256/<hex>` and `uploads/<id>`.
///
/// Uploads are appended in place, hashed as they stream; a finished upload is renamed into the
/// blob folder only when its digest matches, so a blob file is always complete and correct.
public final class BlobFiles: @unchecked Sendable {
    public let root: URL
    private let lock = NSLock()
    /// Running SHA-256 of uploads in progress, so a chunk is hashed once as it arrives. After a
    /// restart the state is rebuilt by reading what was already received.
    private var hashers: [String: DigestWriter] = [:]

    public init(root: URL) throws {
        self.root = root
        try FileManager.default.createDirectory(at: root.appendingPathComponent("blobs/sha256"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("uploads"), withIntermediateDirectories: true)
    }

    public func blobPath(_ digest: Digest) -> String { root.appendingPathComponent("blobs/sha256/\(digest.hex)").path }
    func uploadPath(_ id: String) -> String { root.appendingPathComponent("uploads/\(id)").path }

    public func blobExists(_ digest: Digest) -> Bool { FileManager.default.fileExists(atPath: blobPath(digest)) }

    /// Bytes received so far for an upload (the file's size is the truth, across restarts).
    func uploadSize(_ id: String) -> Int64? {
        var info = stat()
        guard stat(uploadPath(id), &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    func createUpload(_ id: String) throws {
        guard FileManager.default.createFile(atPath: uploadPath(id), contents: nil) else {
            throw RegistryError(500, "cannot create upload file", code: "BLOB_UPLOAD_INVALID")
        }
        lock.withLock { hashers[id] = DigestWriter() }
    }

    /// Appends a request body at `offset`, which must be the upload's current size.
    func append(_ id: String, body: some AsyncSequence<ByteBuffer, any Error>, at offset: Int64, limit: Int64 = .max) async throws -> Int64 {
        var hasher = try resumeHasher(id, size: offset)
        let fd = open(uploadPath(id), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RegistryError(404, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        defer { close(fd) }
        var position = offset
        do {
            for try await buffer in body {
                if position + Int64(buffer.readableBytes) - offset > limit {
                    throw RegistryError(413, "body is larger than \(limit) bytes", code: "SIZE_INVALID")
                }
                try buffer.withUnsafeReadableBytes { bytes in
                    var written = 0
                    while written < bytes.count {
                        let count = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(position) + off_t(written))
                        if count < 0 { if errno == EINTR { continue }; throw RegistryError(500, "cannot write upload", code: "BLOB_UPLOAD_INVALID") }
                        written += count
                    }
                    hasher.update(bytes)
                }
                position += Int64(buffer.readableBytes)
            }
        } catch {
            // Keep what arrived: the client resumes from the upload's size. The hash of a partial
            // write is unknown here, so it is rebuilt from the file on the next request.
            ftruncate(fd, off_t(position))
            lock.withLock { _ = hashers.removeValue(forKey: id) }
            throw error
        }
        lock.withLock { hashers[id] = hasher }
        return position
    }

    /// The running hash for an upload of `size` bytes, reading the file when the server restarted.
    private func resumeHasher(_ id: String, size: Int64) throws -> DigestWriter {
        if let hasher = lock.withLock({ hashers[id] }), hasher.count == size { return hasher }
        var hasher = DigestWriter()
        let fd = open(uploadPath(id), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RegistryError(404, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var remaining = size
        while remaining > 0 {
            let count = read(fd, buffer.baseAddress, min(buffer.count, Int(remaining)))
            if count <= 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            remaining -= Int64(count)
        }
        return hasher
    }

    /// Checks the digest and moves the upload into the blob folder.
    func finishUpload(_ id: String, expected: Digest) throws -> Int64 {
        guard let size = uploadSize(id) else { throw RegistryError(404, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        let actual = try resumeHasher(id, size: size).finalize()
        guard actual == expected else {
            throw RegistryError(400, "the uploaded bytes have digest \(actual), not \(expected)", code: "DIGEST_INVALID")
        }
        if !blobExists(expected) {
            guard rename(uploadPath(id), blobPath(expected)) == 0 else {
                throw RegistryError(500, "cannot store blob: \(String(cString: strerror(errno)))", code: "BLOB_UPLOAD_INVALID")
            }
        }
        discardUpload(id)
        return size
    }

    /// Uploads whose file has not changed since `date` (abandoned: a live upload's PATCHes keep
    /// touching it).
    func uploads(untouchedSince date: Date) -> [String] {
        let folder = root.appendingPathComponent("uploads")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { name in
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path))?[.modificationDate] as? Date
            else { return false }
            return modified < date
        }
    }

    func discardUpload(_ id: String) {
        try? FileManager.default.removeItem(atPath: uploadPath(id))
        lock.withLock { _ = hashers.removeValue(forKey: id) }
    }

    /// Writes a small blob (a manifest) held in memory.
    func writeSmallBlob(_ data: Data) throws -> Digest {
        let digest = Digest.of(data)
        if !blobExists(digest) {
            let temporary = root.appendingPathComponent("uploads/\(UUID().uuidString)")
            try data.write(to: temporary)
            rename(temporary.path, blobPath(digest))
        }
        return digest
    }
}
