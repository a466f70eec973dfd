import Foundation
import LatheArchive
import LatheRunner
import NIOCore

/// The file-system ``BlobStore``: objects are files under a root folder (`DATA/blobs/sha256/<hex>`,
/// `DATA/files/<id>`, `DATA/outputs/<token>/<name>`), uploads are files in `DATA/uploads/`.
/// Replicas on several machines share it by mounting one folder.
///
/// Uploads are appended in place (the registry lets one request write to an upload at a time);
/// a finished upload is hashed as it lies on disk, from its first byte to its last, and renamed
/// into the blob folder only when that digest matches, so a blob file is always complete and
/// correct whatever happened to the upload on the way.
public final class FilesystemBlobStore: BlobStore, @unchecked Sendable {
    public let root: URL

    public init(root: URL) throws {
        self.root = root
        for folder in ["blobs/sha256", "uploads", "upload-digests", "files", "outputs"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
    }

    private func url(_ key: BlobKey) -> URL { root.appendingPathComponent(key.path) }

    /// Upload ids are the registry's own (UUIDs); anything else names no upload.
    private func uploadPath(_ id: String) throws -> String {
        guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isHexDigit || $0 == "-") }) else {
            throw StoreError(.notFound, "upload \(id.prefix(64)) is unknown", code: "BLOB_UPLOAD_UNKNOWN")
        }
        return root.appendingPathComponent("uploads/\(id)").path
    }

    /// Where the digest a client named when it started an upload is kept (beside, not among, the uploads).
    private func namedDigestPath(_ id: String) throws -> String {
        _ = try uploadPath(id)
        return root.appendingPathComponent("upload-digests/\(id)").path
    }

    // MARK: Objects

    public func size(of key: BlobKey) async throws -> Int64? {
        var info = stat()
        guard stat(url(key).path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(info.st_size)
    }

    public func read(_ key: BlobKey, range: ClosedRange<Int64>?, into write: (ByteBuffer) async throws -> Void) async throws {
        let fd = open(url(key).path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(.notFound, "\(key) does not exist", code: "BLOB_UNKNOWN") }
        defer { close(fd) }
        var position = range?.lowerBound ?? 0
        let end = range.map { $0.upperBound + 1 } ?? Int64.max
        let chunk = 1 << 20
        while position < end {
            let wanted = Int(min(Int64(chunk), end - position))
            var buffer = ByteBufferAllocator().buffer(capacity: wanted)
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: wanted) { bytes in
                max(0, pread(fd, bytes.baseAddress, wanted, off_t(position)))
            }
            if count == 0 { break }
            position += Int64(count)
            try await write(buffer)
        }
    }

    public func store(_ key: BlobKey, from file: URL) async throws {
        let target = url(key)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        if rename(file.path, target.path) == 0 { return }
        // Another file system: copy beside the target, then rename (readers never see a part).
        let temporary = root.appendingPathComponent("uploads/.store-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: file, to: temporary)
        guard rename(temporary.path, target.path) == 0 else {
            try? FileManager.default.removeItem(at: temporary)
            throw StoreError(.failed, "cannot store \(key): \(String(cString: strerror(errno)))", code: "BLOB_UPLOAD_INVALID")
        }
        try? FileManager.default.removeItem(at: file)
    }

    public func delete(_ key: BlobKey) async throws {
        let target = url(key)
        try? FileManager.default.removeItem(at: target)
        // An output's token folder goes with its last file.
        if key.path.hasPrefix("outputs/") { rmdir(target.deletingLastPathComponent().path) }
    }

    public func list(under prefix: String) async throws -> [BlobListing] {
        let relative = prefix.split(separator: "/").joined(separator: "/")
        // readdir and lstat, not FileManager's enumerator: a collection lists every object, and
        // Foundation's URL resource values cost several times the system calls themselves.
        return try await onOwnThread {
            var found: [BlobListing] = []
            self.walk(relative, into: &found)
            return found
        }
    }

    /// Adds the objects under `relative` (a folder below the root), depth first. Links are
    /// skipped: nothing the store writes is one.
    private func walk(_ relative: String, into found: inout [BlobListing]) {
        let folder = relative.isEmpty ? root.path : root.path + "/" + relative
        guard let directory = opendir(folder) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let child = relative.isEmpty ? name : relative + "/" + name
            var info = stat()
            guard lstat(folder + "/" + name, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                walk(child, into: &found)
            case S_IFREG:
                guard let key = BlobKey.parse(child) else { continue }
                let modified = Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1_000_000_000)
                found.append(BlobListing(key: key, size: Int64(info.st_size), modified: modified))
            default:
                continue
            }
        }
    }

    public func redirectURL(for key: BlobKey, expires: TimeInterval, downloadName: String?) async throws -> URL? { nil }

    public func localFile(_ key: BlobKey) -> URL? {
        let path = url(key)
        return FileManager.default.fileExists(atPath: path.path) ? path : nil
    }

    // MARK: Uploads

    public func uploadSize(_ id: String) async throws -> Int64? {
        var info = stat()
        guard stat(try uploadPath(id), &info) == 0 else { return nil }
        return Int64(info.st_size)
    }

    public func createUpload(_ id: String, digest: Digest?) async throws {
        // Files are renamed into place, so a named digest saves nothing here; it is kept only to
        // hold the client to it, as the S3 store does.
        if let digest, !FileManager.default.createFile(atPath: try namedDigestPath(id), contents: Data(digest.description.utf8)) {
            throw StoreError(.failed, "cannot create upload file", code: "BLOB_UPLOAD_INVALID")
        }
        guard FileManager.default.createFile(atPath: try uploadPath(id), contents: nil) else {
            throw StoreError(.failed, "cannot create upload file", code: "BLOB_UPLOAD_INVALID")
        }
    }

    public func append<Body: AsyncSequence & Sendable>(_ id: String, body: Body, at offset: Int64, limit: Int64) async throws -> Int64
        where Body.Element == ByteBuffer {
        let fd = open(try uploadPath(id), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(.notFound, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, Int64(info.st_size) == offset else {
            throw StoreError(.badRange, "upload \(id) has \(info.st_size) bytes, not \(offset)", code: "BLOB_UPLOAD_INVALID")
        }
        var position = offset
        do {
            for try await buffer in body {
                let (sum, overflow) = position.addingReportingOverflow(Int64(buffer.readableBytes))
                if overflow || sum - offset > limit {
                    throw StoreError(.tooLarge, "body is larger than \(limit) bytes", code: "SIZE_INVALID")
                }
                try buffer.withUnsafeReadableBytes { bytes in
                    var written = 0
                    while written < bytes.count {
                        let count = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(position) + off_t(written))
                        if count < 0 { if errno == EINTR { continue }; throw StoreError(.failed, "cannot write upload", code: "BLOB_UPLOAD_INVALID") }
                        written += count
                    }
                }
                position = sum
            }
        } catch {
            // Keep what arrived: the client resumes from the upload's size.
            ftruncate(fd, off_t(position))
            throw error
        }
        return position
    }

    public func finishUpload(_ id: String, as expected: Digest) async throws -> Int64 {
        guard let size = try await uploadSize(id) else { throw StoreError(.notFound, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        let path = try uploadPath(id)
        if let named = (try? String(contentsOfFile: try namedDigestPath(id), encoding: .utf8)).flatMap(Digest.init(parsing:)), named != expected {
            try await discardUpload(id)
            throw StoreError(.invalid, "upload \(id) was started for \(named) (Lathe-Upload-Digest), not \(expected); start a new upload for \(expected)",
                                code: "DIGEST_INVALID")
        }
        // Hashed as stored, on a thread of its own (a large blob takes a while).
        let (actual, hashed) = try await onOwnThread { try FileHashing.digest(of: URL(fileURLWithPath: path)) }
        guard hashed == size else { throw StoreError(.conflict, "upload \(id) changed while it was being committed; ask GET for its Range and resume", code: "BLOB_UPLOAD_INVALID") }
        guard actual == expected else {
            // The upload ends here: its bytes are not what the client meant to send.
            try await discardUpload(id)
            throw uploadMismatch(size: size, actual: actual, expected: expected)
        }
        // Renamed over any file already there: these bytes were just checked, an older file
        // (from before that check existed) may not have been; readers keep the file they opened.
        guard rename(try uploadPath(id), url(.blob(expected)).path) == 0 else {
            throw StoreError(.failed, "cannot store blob: \(String(cString: strerror(errno)))", code: "BLOB_UPLOAD_INVALID")
        }
        try await discardUpload(id)
        return size
    }

    public func uploads(untouchedSince date: Date) async throws -> [String] {
        let folder = root.appendingPathComponent("uploads")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { name in
            guard !name.hasPrefix("."),
                  let modified = (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path))?[.modificationDate] as? Date
            else { return false }
            return modified < date
        }
    }

    public func discardUpload(_ id: String) async throws {
        try? FileManager.default.removeItem(atPath: try uploadPath(id))
        try? FileManager.default.removeItem(atPath: try namedDigestPath(id))
    }
}
