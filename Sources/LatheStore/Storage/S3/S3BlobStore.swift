import AsyncHTTPClient
import Crypto
import Foundation
import LatheArchive
import NIOCore
import NIOHTTP1

/// The S3 ``BlobStore``: objects at `PREFIX/<key>` in one bucket of any S3-compatible storage
/// (AWS, SeaweedFS, MinIO), so replicas and workers on any machine reach the same blobs.
///
/// An OCI chunked upload is an S3 multipart upload: each request's bytes are spooled to a local
/// file (never memory) and sent as parts of at least `partSize`; what is left over when a
/// request ends (less than a part) is kept as the object `uploads/<id>/tail`, and the parts
/// uploaded so far with the running SHA-256 of the bytes in `uploads/<id>/state`, so the next
/// chunk may arrive at any replica. The digest is therefore known before the parts are
/// assembled; when the client named it at the start, they assemble at the blob's own key and
/// nothing is copied.
///
/// Why a named digest rather than presigned part uploads straight to the bucket: with presigned
/// parts the registry would leave the data path, and so could not hash the bytes before they
/// are assembled; it would have to assemble first and read everything back to check it, and a
/// blob's key would hold unchecked bytes meanwhile. Naming the digest keeps every byte checked
/// before it is visible under that digest, costs no extra pass, and needs no bucket credentials
/// on the client.
public final class S3BlobStore: BlobStore, @unchecked Sendable {
    /// Parts of a multipart upload (S3's minimum is 5 MiB for all but the last).
    public static let partSize: Int64 = 8 << 20
    /// Objects up to this size are stored with one PUT; larger ones in parts.
    public var singlePutLimit: Int64 = 64 << 20

    /// `s3://BUCKET/PREFIX` as the operator wrote it, and the storage's URL (for reports; no secrets).
    public let location: String
    public let endpoint: URL
    let client: S3Client
    package let prefix: String
    package let spool: URL

    /// - Parameters:
    ///   - location: `s3://BUCKET/PREFIX` (the prefix may be empty).
    ///   - endpoint: the storage's URL (path-style addressing).
    ///   - spool: a local folder for upload parts in progress.
    public init(location: String, endpoint: URL, region: String, credentials: SigV4.Credentials, spool: URL) throws {
        guard location.hasPrefix("s3://") else { throw StoreError(.invalid, "--blobs takes s3://BUCKET/PREFIX (files under --data are the default)") }
        let rest = location.dropFirst("s3://".count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let bucket = parts.first, !bucket.isEmpty,
              bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }) else {
            throw StoreError(.invalid, "\(location) names no valid bucket: write s3://BUCKET/PREFIX with a lowercase bucket name")
        }
        guard endpoint.scheme == "http" || endpoint.scheme == "https", endpoint.host != nil else {
            throw StoreError(.invalid, "--s3-endpoint \(endpoint) is not an http(s) URL")
        }
        var prefix = parts.count > 1 ? parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "/")) : ""
        if !prefix.isEmpty { prefix += "/" }
        self.prefix = prefix
        self.location = location
        self.endpoint = endpoint
        self.spool = spool
        try FileManager.default.createDirectory(at: spool, withIntermediateDirectories: true)
        var configuration = HTTPClient.Configuration()
        // A refused connection is retried until the connect timeout: short, so an outage answers 503 quickly.
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(120))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        client = S3Client(endpoint: endpoint, bucket: bucket, signer: SigV4(credentials: credentials, region: region),
                          http: HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration))
    }

    deinit {
        // Not syncShutdown: a deinit may run on one of the client's own event loops, where that traps.
        let http = client.http
        Task { try? await http.shutdown() }
    }

    /// One clear line when the bucket cannot be used (unreachable, wrong credentials, no bucket).
    public func check() async throws {
        let response = try await client.send(.GET, nil, query: [("list-type", "2"), ("max-keys", "1"), ("prefix", prefix)])
        guard response.status == .ok else { throw try await client.failure(response, method: .GET, key: prefix) }
        _ = try? await response.body.collect(upTo: 1 << 20)
    }

    /// S3's `LastModified`, with or without fractional seconds.
    package static func date(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    private func objectKey(_ key: BlobKey) -> String { prefix + key.path }
    private func uploadKey(_ id: String, _ name: String) throws -> String {
        guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isHexDigit || $0 == "-") }) else {
            throw StoreError(.notFound, "upload \(id.prefix(64)) is unknown", code: "BLOB_UPLOAD_UNKNOWN")
        }
        return prefix + "uploads/\(id)/\(name)"
    }

    // MARK: Objects

    public func size(of key: BlobKey) async throws -> Int64? {
        try await size(ofObject: objectKey(key))
    }

    private func size(ofObject key: String) async throws -> Int64? {
        let response = try await client.call(.HEAD, key, accept: [200, 404])
        guard response.status == .ok else { return nil }
        return response.headers.first(name: "Content-Length").flatMap { Int64($0) }
    }

    public func read(_ key: BlobKey, range: ClosedRange<Int64>?, into write: (ByteBuffer) async throws -> Void) async throws {
        try await read(object: objectKey(key), range: range, into: write)
    }

    private func read(object key: String, range: ClosedRange<Int64>?, into write: (ByteBuffer) async throws -> Void) async throws {
        let headers = range.map { ["Range": "bytes=\($0.lowerBound)-\($0.upperBound)"] } ?? [:]
        let response = try await client.call(.GET, key, headers: headers, accept: [200, 206, 404])
        guard response.status != .notFound else { throw StoreError(.notFound, "\(key) does not exist", code: "BLOB_UNKNOWN") }
        for try await buffer in response.body { try await write(buffer) }
    }

    public func store(_ key: BlobKey, from file: URL) async throws {
        try await store(object: objectKey(key), from: file)
        try? FileManager.default.removeItem(at: file)
    }

    private func store(object key: String, from file: URL) async throws {
        let size = Int64((try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.int64Value ?? 0)
        if size <= singlePutLimit {
            _ = try await client.call(.PUT, key, headers: ["Content-Length": String(size)],
                                      body: FileChunks(path: file.path, offset: 0, length: size).body, payloadHash: SigV4.unsignedPayload)
            return
        }
        try await multipart(key, size: size, partSize: Self.partSize) { uploadID, number, offset, length in
            try await self.uploadPart(key, uploadID: uploadID, number: number, file: file.path, offset: offset, length: length)
        }
    }

    /// One multipart upload of `size` bytes at `key`, in parts of `partSize` made by `part`
    /// (upload ID, part number, offset, length), completed, or aborted when a part fails.
    private func multipart(_ key: String, size: Int64, partSize: Int64,
                           part: (String, Int, Int64, Int64) async throws -> Part) async throws {
        let uploadID = try await startMultipart(key)
        do {
            var parts: [Part] = []
            var offset: Int64 = 0
            while offset < size {
                let length = min(partSize, size - offset)
                parts.append(try await part(uploadID, parts.count + 1, offset, length))
                offset += length
            }
            try await completeMultipart(key, uploadID: uploadID, parts: parts)
        } catch {
            _ = try? await client.send(.DELETE, key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    public func delete(_ key: BlobKey) async throws {
        _ = try await client.call(.DELETE, objectKey(key), accept: [200, 204, 404])
    }

    public func list(under prefix: String) async throws -> [BlobListing] {
        try await objects(under: self.prefix + prefix).compactMap { object in
            BlobKey.parse(String(object.key.dropFirst(self.prefix.count))).map { BlobListing(key: $0, size: object.size, modified: object.modified) }
        }
    }

    /// Every object whose key starts with `prefix` (bucket-relative), page after page. Unknown
    /// times count as new: nothing is collected on a guess.
    private func objects(under prefix: String) async throws -> [(key: String, size: Int64, modified: Date)] {
        var found: [(key: String, size: Int64, modified: Date)] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let data = try await client.collect(.GET, nil, query: query)
            for item in S3XML.records("Contents", in: data, fields: ["Key", "Size", "LastModified"]) {
                guard let key = item["Key"], key.hasPrefix(prefix) else { continue }
                found.append((key, Int64(item["Size"] ?? "") ?? 0, item["LastModified"].flatMap(Self.date) ?? .distantFuture))
            }
            token = S3XML.value("IsTruncated", in: data) == "true" ? S3XML.value("NextContinuationToken", in: data) : nil
        } while token != nil
        return found
    }

    public func redirectURL(for key: BlobKey, expires: TimeInterval, downloadName: String?) async throws -> URL? {
        var url = client.url(objectKey(key))
        if let downloadName {
            let disposition = "attachment; filename*=UTF-8''" + SigV4.encode(downloadName)
            url = client.url(objectKey(key), query: [("response-content-disposition", disposition)])
        }
        return client.signer.presign(url: url, expires: Int(max(1, min(expires, 7 * 86400))))
    }

    public func localFile(_ key: BlobKey) -> URL? { nil }

    // MARK: Multipart

    struct Part: Codable, Sendable { var number: Int; var etag: String; var size: Int64 }

    /// What any replica needs to continue an upload: the multipart upload, where it assembles,
    /// its parts, the leftover kept as `uploads/<id>/tail`, and the SHA-256 of the bytes so far.
    package struct UploadState: Codable, Sendable {
        var uploadID: String
        /// The digest the client named when it started (`Lathe-Upload-Digest`): the parts then
        /// assemble at the blob's own key, so finishing copies nothing. Nil: they assemble at
        /// `uploads/<id>/data` and are copied to the blob's key once the digest is known.
        package var target: LatheArchive.Digest?
        var parts: [Part] = []
        package var tail: Int64 = 0
        /// The hash of the parts' bytes, then of the parts' and the tail's: checked before
        /// anything is assembled, whichever replica saw which chunk.
        var partsHash = ResumableDigest()
        package var hash = ResumableDigest()
        package var size: Int64 { parts.reduce(tail) { $0 + $1.size } }
    }

    private func startMultipart(_ key: String) async throws -> String {
        let data = try await client.collect(.POST, key, query: [("uploads", "")])
        guard let id = S3XML.value("UploadId", in: data), !id.isEmpty else {
            throw StoreError(.unavailable, "the blob store did not start a multipart upload for \(key)", code: "UNAVAILABLE")
        }
        return id
    }

    private func uploadPart(_ key: String, uploadID: String, number: Int, file: String, offset: Int64, length: Int64) async throws -> Part {
        let response = try await client.call(.PUT, key, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                             headers: ["Content-Length": String(length)],
                                             body: FileChunks(path: file, offset: offset, length: length).body, payloadHash: SigV4.unsignedPayload)
        guard let etag = response.headers.first(name: "ETag") else {
            throw StoreError(.unavailable, "the blob store answered part \(number) of \(key) without an ETag", code: "UNAVAILABLE")
        }
        _ = try? await response.body.collect(upTo: 1 << 20)
        return Part(number: number, etag: etag, size: length)
    }

    private func completeMultipart(_ key: String, uploadID: String, parts: [Part]) async throws {
        let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\($0.etag)</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        let body = Data(xml.utf8)
        let data = try await client.collect(.POST, key, query: [("uploadId", uploadID)], headers: ["Content-Length": String(body.count)],
                                            body: .bytes(ByteBuffer(data: body)), payloadHash: ByteEncoding.hex(SHA256.hash(data: body)))
        // S3 can answer 200 with an error in the body.
        if let code = S3XML.value("Code", in: data) {
            throw StoreError(.unavailable, "the blob store could not assemble \(key): \(code) \(S3XML.value("Message", in: data) ?? "")", code: "UNAVAILABLE")
        }
    }

    /// The largest object one `CopyObject` may copy (S3's limit is 5 GiB); larger ones are
    /// copied in parts of `copyPartSize` with `UploadPartCopy`. Settable so tests reach that
    /// path without 5 GiB files.
    public var copyLimit: Int64 = 5 << 30
    public var copyPartSize: Int64 = 512 << 20
    /// Server-side copies made (whole objects) and parts copied (`UploadPartCopy`): the figures
    /// that show a named upload copies nothing.
    public var copies: Int { lock.withLock { counters.copies } }
    public var partCopies: Int { lock.withLock { counters.parts } }
    private let lock = NSLock()
    private var counters = (copies: 0, parts: 0)

    /// Copies `source` (bucket-relative) of `size` bytes to `target` inside the storage: the
    /// bytes do not pass through the server.
    private func copy(_ source: String, size: Int64, to target: String) async throws {
        let from = "/" + client.bucket + "/" + SigV4.encode(source, keepSlash: true)
        lock.withLock { counters.copies += 1 }
        if size <= copyLimit {
            let data = try await client.collect(.PUT, target, headers: ["x-amz-copy-source": from])
            if let code = S3XML.value("Code", in: data) {
                throw StoreError(.unavailable, "the blob store could not copy \(source): \(code)", code: "UNAVAILABLE")
            }
            return
        }
        try await multipart(target, size: size, partSize: copyPartSize) { uploadID, number, offset, length in
            let data = try await self.client.collect(.PUT, target, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                                     headers: ["x-amz-copy-source": from, "x-amz-copy-source-range": "bytes=\(offset)-\(offset + length - 1)"])
            guard S3XML.value("Code", in: data) == nil, let etag = S3XML.value("ETag", in: data) else {
                throw StoreError(.unavailable, "the blob store could not copy bytes \(offset)-\(offset + length - 1) of \(source): \(S3XML.value("Code", in: data) ?? "no ETag")",
                                    code: "UNAVAILABLE")
            }
            self.lock.withLock { self.counters.parts += 1 }
            return Part(number: number, etag: etag, size: length)
        }
    }

    private func loadState(_ id: String) async throws -> UploadState? {
        let response = try await client.call(.GET, try uploadKey(id, "state"), accept: [200, 404])
        guard response.status == .ok else { return nil }
        let data = Data(buffer: try await response.body.collect(upTo: 4 << 20))
        return try JSONDecoder().decode(UploadState.self, from: data)
    }

    private func saveState(_ id: String, _ state: UploadState) async throws {
        let data = try JSONEncoder().encode(state)
        _ = try await client.call(.PUT, try uploadKey(id, "state"), headers: ["Content-Length": String(data.count)],
                                  body: .bytes(ByteBuffer(data: data)), payloadHash: ByteEncoding.hex(SHA256.hash(data: data)))
    }

    /// Where an upload's parts assemble: the named blob's own key, or the upload's staging key.
    private func assemblyKey(_ id: String, _ state: UploadState) throws -> String {
        try state.target.map { objectKey(.blob($0)) } ?? uploadKey(id, "data")
    }

    // MARK: Uploads

    public func createUpload(_ id: String, digest: LatheArchive.Digest?) async throws {
        var state = UploadState(uploadID: "", target: digest)
        state.uploadID = try await startMultipart(try assemblyKey(id, state))
        try await saveState(id, state)
    }

    public func uploadSize(_ id: String) async throws -> Int64? {
        try await loadState(id)?.size
    }

    public func append<Body: AsyncSequence & Sendable>(_ id: String, body: Body, at offset: Int64, limit: Int64) async throws -> Int64
        where Body.Element == ByteBuffer {
        guard var state = try await loadState(id) else { throw StoreError(.notFound, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        guard state.size == offset else {
            throw StoreError(.badRange, "upload \(id) has \(state.size) bytes, not \(offset)", code: "BLOB_UPLOAD_INVALID")
        }
        let dataKey = try assemblyKey(id, state), tailKey = try uploadKey(id, "tail")
        var hasher = state.hash
        var spool = try SpoolFile(folder: self.spool, id: id)
        defer { spool.discard() }
        // The tail left by the last request comes first (already in `hasher`).
        if state.tail > 0 {
            try await read(object: tailKey, range: nil) { try spool.write($0) }
        }
        // Full parts go up while the next ones arrive, a few at a time, each from its own file.
        var inFlight: [(task: Task<Part, Error>, hashAfter: ResumableDigest)] = []
        var failure: Error?
        /// Records the oldest part in flight once it is up (in order: the parts stay contiguous).
        func settleOldest() async {
            let (task, hashAfter) = inFlight.removeFirst()
            switch await task.result {
            case .success(let part) where failure == nil:
                state.parts.append(part)
                state.partsHash = hashAfter
            case .success: break
            case .failure(let error): failure = failure ?? error
            }
        }
        /// After a failure: the upload is its parts, without a tail (the client resends the rest).
        func keepPartsOnly() async {
            state.tail = 0
            state.hash = state.partsHash
            try? await saveState(id, state)
        }
        var received = offset
        do {
            for try await buffer in body {
                let (sum, overflow) = received.addingReportingOverflow(Int64(buffer.readableBytes))
                if overflow || sum - offset > limit { throw StoreError(.tooLarge, "body is larger than \(limit) bytes", code: "SIZE_INVALID") }
                try spool.write(buffer)
                buffer.withUnsafeReadableBytes { hasher.update($0) }
                received = sum
                if spool.size >= Self.partSize {
                    let full = spool, number = state.parts.count + inFlight.count + 1, uploadID = state.uploadID
                    spool = try SpoolFile(folder: self.spool, id: id)
                    inFlight.append((Task {
                        defer { full.discard() }
                        return try await self.uploadPart(dataKey, uploadID: uploadID, number: number, file: full.url.path, offset: 0, length: full.size)
                    }, hasher))
                    if inFlight.count >= Self.partsInFlight { await settleOldest() }
                    if let failure { throw failure }
                }
            }
        } catch {
            while !inFlight.isEmpty { await settleOldest() }
            // Keep what arrived in order, so the client can resume from the upload's size; bytes
            // after a part that failed are dropped (the client sends them again).
            if failure == nil {
                do {
                    try await keepTail(id, state: &state, key: tailKey, file: spool.url, length: spool.size, hash: hasher)
                } catch {
                    await keepPartsOnly()
                }
            } else {
                await keepPartsOnly()
            }
            throw error
        }
        while !inFlight.isEmpty { await settleOldest() }
        if let failure {
            await keepPartsOnly()
            throw failure
        }
        try await keepTail(id, state: &state, key: tailKey, file: spool.url, length: spool.size, hash: hasher)
        return received
    }

    /// Parts uploaded at once while a request streams in.
    static let partsInFlight = 4

    /// A local file a part is gathered in (on disk, never in memory).
    struct SpoolFile: @unchecked Sendable {
        let url: URL
        let fd: Int32
        private(set) var size: Int64 = 0

        init(folder: URL, id: String) throws {
            url = folder.appendingPathComponent("\(id)-\(UUID().uuidString)")
            fd = open(url.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StoreError(.failed, "cannot spool upload \(id) in \(folder.path)") }
        }

        mutating func write(_ buffer: ByteBuffer) throws {
            let (fd, start) = (self.fd, size)
            try buffer.withUnsafeReadableBytes { bytes in
                var written = 0
                while written < bytes.count {
                    let count = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(start) + off_t(written))
                    if count < 0 { if errno == EINTR { continue }; throw StoreError(.failed, "cannot write to the upload spool") }
                    written += count
                }
            }
            size += Int64(buffer.readableBytes)
        }

        func discard() {
            close(fd)
            unlink(url.path)
        }
    }

    /// Stores the spool's leftover (less than a part) as the upload's tail and saves the state
    /// with `hash`, the hash of the parts and that tail.
    private func keepTail(_ id: String, state: inout UploadState, key: String, file: URL, length: Int64, hash: ResumableDigest) async throws {
        if length > 0 {
            _ = try await client.call(.PUT, key, headers: ["Content-Length": String(length)],
                                      body: FileChunks(path: file.path, offset: 0, length: length).body, payloadHash: SigV4.unsignedPayload)
        }
        state.tail = length
        state.hash = hash
        try await saveState(id, state)
    }

    public func finishUpload(_ id: String, as expected: LatheArchive.Digest) async throws -> Int64 {
        guard var state = try await loadState(id) else { throw StoreError(.notFound, "upload \(id) is unknown", code: "BLOB_UPLOAD_UNKNOWN") }
        let total = state.size
        if let target = state.target, target != expected {
            try? await discardUpload(id)
            throw StoreError(.invalid, "upload \(id) was started for \(target) (Lathe-Upload-Digest), not \(expected); start a new upload for \(expected)",
                                code: "DIGEST_INVALID")
        }
        // Checked before anything is assembled: a blob's key never holds other bytes, not even for a moment.
        let actual = state.hash.finalize()
        guard state.hash.count == total, actual == expected else {
            // The upload ends here: its bytes are not what the client meant to send.
            try? await discardUpload(id)
            throw uploadMismatch(size: total, actual: actual, expected: expected)
        }
        let dataKey = try assemblyKey(id, state), tailKey = try uploadKey(id, "tail")
        let target = objectKey(.blob(expected))
        if state.parts.isEmpty {
            // Smaller than a part: the tail is the whole blob.
            if state.tail == 0 {
                let empty = spool.appendingPathComponent("\(id)-empty")
                _ = FileManager.default.createFile(atPath: empty.path, contents: nil)
                defer { try? FileManager.default.removeItem(at: empty) }
                try await store(object: target, from: empty)
            } else {
                try await copy(tailKey, size: total, to: target)
            }
        } else {
            if state.tail > 0 {
                var last = try SpoolFile(folder: spool, id: id)
                defer { last.discard() }
                try await read(object: tailKey, range: nil) { try last.write($0) }
                state.parts.append(try await uploadPart(dataKey, uploadID: state.uploadID, number: state.parts.count + 1, file: last.url.path,
                                                        offset: 0, length: last.size))
            }
            try await completeMultipart(dataKey, uploadID: state.uploadID, parts: state.parts)
            // Assembled at the blob's key already when the client named the digest; else copied
            // there (over any object already there: checked bytes replace possibly unchecked ones).
            if dataKey != target { try await copy(dataKey, size: total, to: target) }
        }
        try await discardUpload(id)
        return total
    }

    public func discardUpload(_ id: String) async throws {
        if let state = try? await loadState(id) {
            // Aborting an upload never touches the object at its key: a named blob stays as it was.
            _ = try? await client.send(.DELETE, try assemblyKey(id, state), query: [("uploadId", state.uploadID)])
        }
        for name in ["data", "tail", "state"] {
            _ = try? await client.call(.DELETE, try uploadKey(id, name), accept: [200, 204, 404])
        }
    }

    public func uploads(untouchedSince date: Date) async throws -> [String] {
        // An upload's state is rewritten by every request, so its time is the upload's last activity.
        try await objects(under: prefix + "uploads/").compactMap { object in
            let parts = object.key.dropFirst(prefix.count).split(separator: "/")
            return parts.count == 3 && parts[2] == "state" && object.modified < date ? String(parts[1]) : nil
        }
    }
}
