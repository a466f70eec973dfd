import Crypto
import Foundation
import Hummingbird
import LatheArchive
import LatheRunner
import LatheSpec
import MultipartKit
import NIOCore
import LatheStore
import LatheCore

/// `/v1/files`: multipart upload (streamed to disk, 100 MB at most), list, get, delete. A
/// prediction input may then name the file's `urls.get`, which the server resolves itself.
struct FileRoutes {
    let registry: Registry
    static let maxBytes: Int64 = 100 << 20
    var files: FileStore { FileStore(database: registry.database) }

    /// Ids are `PredictionService.newID()`: 26 lowercase base32 characters (never a path).
    static func isID(_ id: String) -> Bool { PredictionService.isID(id) }

    /// Stores a file a web form streamed to disk as `owner`'s, like an upload to /v1/files;
    /// returns the URL a prediction input names it by.
    static func store(file: URL, size: Int64, name: String, contentType: String, owner: String, registry: Registry) async throws -> String {
        try await checkQuota(owner: owner, adding: size, registry: registry)
        let id = PredictionService.newID()
        guard let key = BlobKey.file(id) else { throw RegistryError(500, "bad file id") }
        let digest = try await onOwnThread { try FileHashing.digest(of: file).0 }
        try await registry.blobs.store(key, from: file)
        try await FileStore(database: registry.database).insert(.init(id: id, ownerID: owner, name: name, contentType: contentType,
                                                                       size: size, sha256: digest.hex, metadata: "{}", now: Date()))
        return "\(registry.baseURL)/v1/files/\(id)"
    }

    /// Where an upload streams before it is complete (on this machine; stored in the blob store then).
    static func partialPath(_ id: String, registry: Registry) -> URL {
        registry.scratch.appendingPathComponent("files/.partial-\(id)")
    }

    /// 413 when `adding` bytes would take `owner` past the operator's quota.
    static func checkQuota(owner: String, adding: Int64, registry: Registry) async throws {
        try checkQuota(used: try await FileStore(database: registry.database).used(by: owner), adding: adding, quota: registry.fileQuota)
    }

    /// 413 when `adding` bytes to `used` would pass `quota`.
    static func checkQuota(used: Int64, adding: Int64, quota: Int64) throws {
        guard used + adding <= quota else {
            throw RegistryError(413, "this upload would take your files to \((used + adding) >> 20) MB, over your quota of \(quota >> 20) MB; "
                                + "delete files you no longer need (DELETE /v1/files/{id}) or wait for them to expire")
        }
    }

    func add(to v1: RouterGroup<RegistryContext>) {
        v1.post("files") { request, context in try await upload(request, context) }
        v1.get("files") { _, context in
            let principal = try signedIn(context)
            let rows = try await files.list(owner: principal.user.id)
            return try jsonResponse(WireShapes.page(rows.map(shape), next: nil))
        }
        v1.get("files/:id") { _, context in try jsonResponse(shape(try await owned(context))) }
        v1.get("files/:id/download") { _, context -> Response in
            let file = try await owned(context)
            guard let key = BlobKey.file(file.id), let size = try await registry.blobs.size(of: key) else { throw RegistryError(404, "file not found") }
            var headers = OutputFiles.headers(type: file.contentType)
            headers[.contentLength] = String(size)
            return Response(status: .ok, headers: headers, body: registry.blobs.responseBody(key))
        }
        v1.delete("files/:id") { _, context in
            let file = try await owned(context)
            try await files.delete(file.id)
            if let key = BlobKey.file(file.id) { try? await registry.blobs.delete(key) }
            return Response(status: .noContent)
        }
    }

    private func signedIn(_ context: RegistryContext) throws -> Principal {
        guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
        return principal
    }

    private func owned(_ context: RegistryContext) async throws -> FileRecord {
        let principal = try signedIn(context)
        guard let file = try await files.file(try context.parameters.require("id"), owner: principal.user.id) else {
            throw RegistryError(404, "file not found")
        }
        return file
    }

    func shape(_ file: FileRecord) -> JSONValue {
        let metadata = (try? JSONDecoder().decode(JSONValue.self, from: Data(file.metadata.utf8))) ?? .object([:])
        return .object([
            "id": .string(file.id), "name": .string(file.name), "content_type": .string(file.contentType), "size": .int(Int(file.size)),
            "etag": .string(file.sha256), "checksums": .object(["sha256": .string(file.sha256)]), "metadata": metadata,
            "created_at": .string(file.createdAt), "expires_at": .string(file.expiresAt),
            "urls": .object(["get": .string("\(registry.baseURL)/v1/files/\(file.id)")]),
        ])
    }

    /// Parses the multipart body as it streams; the `content` part goes straight to a file.
    private func upload(_ request: Request, _ context: RegistryContext) async throws -> Response {
        let principal = try signedIn(context)
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("multipart/form-data"),
              let boundary = type.components(separatedBy: "boundary=").last?.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) else {
            throw RegistryError(400, "send multipart/form-data with a `content` part")
        }
        // A declared length over the limit (with room for the multipart framing) is refused before
        // reading; a chunked body is counted as it streams.
        if let length = request.headers[.contentLength].flatMap(Int64.init), length > Self.maxBytes + (64 << 10) {
            throw RegistryError(413, "files must be under 100 MB")
        }
        let declared = request.headers[.contentLength].flatMap { RequestValues.count(Substring($0)) } ?? 0
        // Read once: the declared length is checked before the body, the streamed size as it grows.
        let used = try await files.used(by: principal.user.id)
        try Self.checkQuota(used: used, adding: max(0, declared - (64 << 10)), quota: registry.fileQuota)
        let id = PredictionService.newID()
        guard let key = BlobKey.file(id) else { throw RegistryError(500, "bad file id") }
        // The body streams into a partial file, stored only when complete: a dropped connection
        // leaves nothing that counts (and housekeeping removes the partial file).
        let partial = Self.partialPath(id, registry: registry)
        try FileManager.default.createDirectory(at: partial.deletingLastPathComponent(), withIntermediateDirectories: true)
        let state = UploadState(path: partial.path)
        defer { state.close() }
        do {
            let parser = MultipartParser(boundary: boundary)
            parser.onHeader = { name, value in state.header(name, value) }
            parser.onBody = { buffer in state.body(&buffer) }
            parser.onPartComplete = { state.partComplete() }
            for try await buffer in request.body {
                try parser.execute(buffer)
                if state.size > Self.maxBytes { throw RegistryError(413, "files must be under 100 MB") }
                try Self.checkQuota(used: used, adding: state.size, quota: registry.fileQuota)
            }
            guard state.hadContent else { throw RegistryError(400, "the multipart body has no `content` part") }
            state.close()
            try await registry.blobs.store(key, from: partial)
        } catch {
            try? FileManager.default.removeItem(at: partial)
            throw error
        }
        let file = FileRecord(id: id, ownerID: principal.user.id, name: state.fields["filename"] ?? state.fileName ?? "file",
                              contentType: state.fields["type"] ?? state.contentType ?? "application/octet-stream", size: state.size,
                              sha256: state.digest(), metadata: state.fields["metadata"] ?? "{}", now: Date())
        try await files.insert(file)
        return try jsonResponse(shape(file), status: .created)
    }
}

/// What the multipart callbacks collect: small fields in memory, `content` on disk.
final class UploadState: @unchecked Sendable {
    private let fd: Int32
    private var hasher = SHA256()
    private var currentName: String?
    private var currentText = Data()
    private(set) var fields: [String: String] = [:]
    private(set) var fileName: String?
    private(set) var contentType: String?
    private(set) var size: Int64 = 0
    private(set) var hadContent = false

    init(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    }

    func header(_ name: String, _ value: String) {
        switch name.lowercased() {
        case "content-disposition":
            currentName = Self.parameter("name", in: value)
            if currentName == "content" {
                hadContent = true
                fileName = Self.parameter("filename", in: value)
            }
        case "content-type" where currentName == "content":
            contentType = value
        default:
            break
        }
    }

    func body(_ buffer: inout ByteBuffer) {
        if currentName == "content" {
            buffer.withUnsafeReadableBytes { bytes in
                _ = write(fd, bytes.baseAddress, bytes.count)
                hasher.update(bufferPointer: bytes)
            }
            size += Int64(buffer.readableBytes)
        } else if currentText.count < 64 << 10 {
            currentText.append(contentsOf: buffer.readableBytesView)
        }
    }

    func partComplete() {
        if let name = currentName, name != "content" { fields[name] = String(decoding: currentText, as: UTF8.self) }
        currentName = nil
        currentText = Data()
    }

    func digest() -> String { ByteEncoding.hex(hasher.finalize()) }

    private var closed = false

    /// Closes the file (once; later calls do nothing).
    func close() {
        guard !closed else { return }
        closed = true
        Foundation.close(fd)
    }

    static func parameter(_ key: String, in header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if pair.count == 2, pair[0] == key { return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }
}
