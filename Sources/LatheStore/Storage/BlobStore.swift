import Foundation
import LatheArchive
import LatheSpec
import NIOCore

/// Where an object lives in a ``BlobStore``: `blobs/sha256/<hex>` (registry blobs: layers,
/// configs, manifests), `files/<id>` (uploads through `/v1/files`), `outputs/<token>/<name>`
/// (files models made). Built only by these constructors, so no request value ever becomes a
/// path of its own choosing.
public struct BlobKey: Hashable, Sendable, CustomStringConvertible {
    /// Slash-separated segments, each checked by the constructor that made it.
    public let path: String

    private init(_ path: String) { self.path = path }

    public static func blob(_ digest: Digest) -> BlobKey { BlobKey("blobs/sha256/\(digest.hex)") }

    /// An uploaded file (ids are the registry's own: letters and digits).
    public static func file(_ id: String) -> BlobKey? {
        guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        return BlobKey("files/\(id)")
    }

    /// An output file: a 48-hex-digit token and a plain file name.
    public static func output(token: String, name: String) -> BlobKey? {
        guard token.count == 48, token.allSatisfy(\.isHexDigit), isPlainName(name) else { return nil }
        return BlobKey("outputs/\(token)/\(name)")
    }

    /// The key a listing returned, if it is one of the three kinds.
    public static func parse(_ path: String) -> BlobKey? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("blobs", 3) where parts[1] == "sha256": return Digest(parsing: "sha256:" + parts[2]).map(blob)
        case ("files", 2): return file(parts[1])
        case ("outputs", 3): return output(token: parts[1], name: parts[2])
        default: return nil
        }
    }

    package static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    public var description: String { path }

    /// The output file a URL names: `/files/TOKEN/NAME` under `baseURL` (decoded), or under any
    /// host when `baseURL` is nil; nil for anything else.
    public static func output(url: String, baseURL: String?) -> BlobKey? {
        let parts: [String]
        if let baseURL {
            let prefix = baseURL + "/files/"
            guard url.hasPrefix(prefix) else { return nil }
            parts = url.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
        } else {
            // URL.path is already decoded; a name never holds a "/".
            guard let path = URL(string: url)?.path, path.hasPrefix("/files/") else { return nil }
            parts = path.dropFirst("/files/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        }
        guard parts.count == 2 else { return nil }
        return output(token: parts[0], name: parts[1])
    }

    /// Every output file a prediction's output names (see ``output(url:baseURL:)``).
    public static func outputs(in value: JSONValue?, baseURL: String?) -> [BlobKey] {
        switch value {
        case .string(let text): return output(url: text, baseURL: baseURL).map { [$0] } ?? []
        case .array(let items): return items.flatMap { outputs(in: $0, baseURL: baseURL) }
        case .object(let object): return object.values.flatMap { outputs(in: $0, baseURL: baseURL) }
        default: return []
        }
    }
}

/// One object found by ``BlobStore/list(under:)``.
public struct BlobListing: Sendable, Equatable {
    public var key: BlobKey
    public var size: Int64
    public var modified: Date
}

/// The `BlobStore` seam (DESIGN §5): registry blobs, uploaded files and output files, kept on
/// the local file system (one machine, or a folder every replica mounts) or in S3-compatible
/// object storage. Nothing outside a store builds a path to a blob. Every implementation passes
/// the one `BlobStoreSuite`.
public protocol BlobStore: Sendable {
    /// The object's size, or nil when there is none.
    func size(of key: BlobKey) async throws -> Int64?

    /// Hands the object's bytes (those in `range`, else all) to `write` in order, waiting for
    /// each call, so a slow reader slows the read instead of filling memory.
    func read(_ key: BlobKey, range: ClosedRange<Int64>?, into write: (ByteBuffer) async throws -> Void) async throws

    /// Stores a local file's bytes at `key`; readers see the old object or the new one, never a part.
    func store(_ key: BlobKey, from file: URL) async throws

    /// Removes the object (nothing happens when there is none).
    func delete(_ key: BlobKey) async throws

    /// The objects whose key starts with `prefix`.
    func list(under prefix: String) async throws -> [BlobListing]

    /// A URL a client may fetch the object from directly for `expires` seconds (presigned), or
    /// nil when the store has none (the registry streams the bytes itself). `downloadName` makes
    /// a browser save the file instead of rendering it.
    func redirectURL(for key: BlobKey, expires: TimeInterval, downloadName: String?) async throws -> URL?

    /// The object as a file on this machine, when the store keeps it as one (no copy needed).
    func localFile(_ key: BlobKey) -> URL?

    // MARK: Resumable uploads (OCI chunked pushes)

    /// Starts an upload. `digest`, when the client named it at the start (`Lathe-Upload-Digest`),
    /// lets a store that assembles uploads in place (S3 multipart) put them at the blob's own
    /// key; the bytes are still checked before anything is assembled there, and finishing as any
    /// other digest is `DIGEST_INVALID`.
    func createUpload(_ id: String, digest: Digest?) async throws
    /// Bytes received so far, or nil for an unknown upload.
    func uploadSize(_ id: String) async throws -> Int64?
    /// Appends a request body at `offset`, which must be the upload's current size; returns the
    /// new size. What arrived before a failure is kept, so the client can resume.
    func append<Body: AsyncSequence & Sendable>(_ id: String, body: Body, at offset: Int64, limit: Int64) async throws -> Int64
        where Body.Element == ByteBuffer
    /// Checks the upload's digest and makes it the blob `digest`; returns its size. Bytes that
    /// do not match end the upload (the client starts again).
    func finishUpload(_ id: String, as digest: Digest) async throws -> Int64
    func discardUpload(_ id: String) async throws
    /// Uploads nobody has added to since `date` (abandoned).
    func uploads(untouchedSince date: Date) async throws -> [String]
}

/// The answer to an upload whose bytes are not the digest the client names: one sentence for
/// every store, with what to do.
func uploadMismatch(size: Int64, actual: Digest, expected: Digest) -> StoreError {
    StoreError(.invalid, "the upload's \(size) bytes have digest \(actual), not \(expected): bytes are missing or differ; the upload is discarded, push the blob again",
                  code: "DIGEST_INVALID")
}

extension BlobStore {
    /// Starts an upload whose digest is told only at its end (plain OCI clients).
    public func createUpload(_ id: String) async throws { try await createUpload(id, digest: nil) }

    /// The whole object in memory: only for small ones (manifests, configs).
    public func data(_ key: BlobKey, limit: Int = 16 << 20) async throws -> Data {
        var data = Data()
        try await read(key, range: nil) { buffer in
            guard data.count + buffer.readableBytes <= limit else {
                throw StoreError(.failed, "\(key) is larger than \(limit) bytes", code: "BLOB_UNKNOWN")
            }
            data.append(contentsOf: buffer.readableBytesView)
        }
        return data
    }

    /// Stores bytes held in memory (small objects: manifests).
    public func store(_ key: BlobKey, data: Data) async throws {
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-blob-\(UUID().uuidString)")
        try data.write(to: temporary)
        defer { try? FileManager.default.removeItem(at: temporary) }
        try await store(key, from: temporary)
    }

    /// Stores a small blob held in memory under its digest.
    @discardableResult
    public func storeBlob(_ data: Data) async throws -> Digest {
        let digest = Digest.of(data)
        if try await size(of: .blob(digest)) == nil { try await store(.blob(digest), data: data) }
        return digest
    }
}
