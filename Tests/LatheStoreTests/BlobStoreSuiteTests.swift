import AsyncHTTPClient
import Foundation
import LatheArchive
@testable import LatheStore
import NIOCore
import LatheTestSupport
import Testing

/// The one suite every ``BlobStore`` passes (as distribution's storage-driver suite): objects,
/// ranges, listings, resumable uploads continued by another instance (another replica), digest
/// checks, and the local cache's verification of what it fetched.
@Suite("BlobStoreSuite: every blob store backend")
struct BlobStoreSuiteTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case filesystem, s3
        var testDescription: String { rawValue }
    }

    /// S3 runs where an endpoint with bucket `lathe` is given (scripts/test starts SeaweedFS).
    static let s3Endpoint = ProcessInfo.processInfo.environment["LATHE_TEST_S3"].flatMap(URL.init(string:))
    /// The backends configured here.
    static let backends = Backend.allCases.filter { $0 == .filesystem || Backends.s3 }

    @Test("S3 is configured", .enabled(if: Backends.s3 || Backends.required,
                                       "S3 is not configured (set LATHE_TEST_S3 to an endpoint with bucket lathe, as scripts/test does): its cases are skipped"))
    func s3Configured() {
        #expect(Backends.s3, "S3 is not configured, and every backend must run here (CI=true or LATHE_TEST_REQUIRE_BACKENDS=1)")
    }

    /// A fresh, empty store of the backend, and a second handle on the same storage (what
    /// another replica would open).
    static func open(_ backend: Backend) throws -> (any BlobStore, any BlobStore) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("blobstore-\(UUID().uuidString)")
        switch backend {
        case .filesystem:
            return (try FilesystemBlobStore(root: scratch), try FilesystemBlobStore(root: scratch))
        case .s3:
            let endpoint = try #require(s3Endpoint, "S3 runs only where it is configured")
            // A prefix of its own in the shared bucket: every run starts empty.
            let location = "s3://lathe/suite-\(UUID().uuidString.lowercased())"
            func store(_ name: String) throws -> S3BlobStore {
                let store = try S3BlobStore(location: location, endpoint: endpoint, region: "us-east-1",
                                            credentials: .init(accessKey: "lathetest", secretKey: "lathetestsecret"),
                                            spool: scratch.appendingPathComponent(name))
                // Small enough that the suite's objects go up in parts too.
                store.singlePutLimit = 9 << 20
                return store
            }
            return (try store("a"), try store("b"))
        }
    }

    /// `count` bytes that differ from MiB to MiB (built from one MiB: quick in debug builds).
    static func bytes(_ count: Int, seed: UInt8 = 7) -> Data {
        let block = Data((0..<Swift.min(count, 1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) })
        var data = Data(capacity: count)
        var index: UInt8 = 0
        while data.count < count {
            var piece = block.prefix(count - data.count)
            piece[piece.startIndex] = index
            index &+= 1
            data.append(piece)
        }
        return data
    }

    static func read(_ store: any BlobStore, _ key: BlobKey, _ range: ClosedRange<Int64>? = nil) async throws -> Data {
        var data = Data()
        try await store.read(key, range: range) { data.append(contentsOf: $0.readableBytesView) }
        return data
    }

    struct Body: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let chunks: [Data]
        struct AsyncIterator: AsyncIteratorProtocol {
            var remaining: [Data]
            mutating func next() async throws -> ByteBuffer? {
                guard !remaining.isEmpty else { return nil }
                return ByteBuffer(data: remaining.removeFirst())
            }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: chunks) }
    }

    /// A request body whose connection drops after `chunks`.
    struct Interrupted: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        struct Dropped: Error {}
        let chunks: [Data]
        struct AsyncIterator: AsyncIteratorProtocol {
            var remaining: [Data]
            mutating func next() async throws -> ByteBuffer? {
                guard !remaining.isEmpty else { throw Dropped() }
                return ByteBuffer(data: remaining.removeFirst())
            }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(remaining: chunks) }
    }

    @Test("objects: store, size, whole and ranged reads, list, replace, delete", arguments: backends)
    func objects(_ backend: Backend) async throws {
        let (store, _) = try Self.open(backend)
        let data = Self.bytes(3 << 20)
        let digest = try await store.storeBlob(data)
        #expect(digest == Digest.of(data))
        #expect(try await store.size(of: .blob(digest)) == Int64(data.count))
        #expect(try await Self.read(store, .blob(digest)) == data)
        #expect(try await Self.read(store, .blob(digest), 5...9) == data[5...9])
        let tail = Int64(data.count - 10)...Int64(data.count - 1)
        #expect(try await Self.read(store, .blob(digest), tail) == data.suffix(10))
        let file = try #require(BlobKey.file("abcdefghijklmnopqrstuvwxyz"))
        try await store.store(file, data: Data("first".utf8))
        try await store.store(file, data: Data("second".utf8))
        #expect(try await store.data(file) == Data("second".utf8))
        #expect(try await store.list(under: "files/").map(\.key) == [file])
        #expect(try await store.list(under: "files/").first?.size == 6)
        #expect(try await store.list(under: "blobs/").map(\.key) == [.blob(digest)])
        try await store.delete(file)
        try await store.delete(file)  // absent: nothing happens
        #expect(try await store.size(of: file) == nil)
        await #expect(throws: StoreError.self) { _ = try await Self.read(store, file) }
    }

    @Test("uploads: chunks, resumed by another instance, wrong digest refused, right digest committed", arguments: backends)
    func uploads(_ backend: Backend) async throws {
        let (store, other) = try Self.open(backend)
        // Three parts and a tail, the second chunk continued by the other instance.
        let data = Self.bytes(27 << 20, seed: 3)
        let id = UUID().uuidString.lowercased()
        try await store.createUpload(id)
        #expect(try await store.uploadSize(id) == 0)
        let first = data.prefix(12 << 20), second = data.suffix(from: 12 << 20)
        #expect(try await store.append(id, body: Body(chunks: [first.prefix(1 << 20), first.suffix(from: 1 << 20)]), at: 0, limit: .max) == Int64(first.count))
        // Another replica continues the upload: it knows its size and rebuilds the running digest.
        #expect(try await other.uploadSize(id) == Int64(first.count))
        #expect(try await other.append(id, body: Body(chunks: [Data(second)]), at: Int64(first.count), limit: .max) == Int64(data.count))
        #expect(try await other.finishUpload(id, as: Digest.of(data)) == Int64(data.count))
        #expect(try await store.uploadSize(id) == nil, "a finished upload is gone")
        #expect(try await Self.read(store, .blob(Digest.of(data))) == data)
        // Bytes that do not match the digest the client names never become that blob; the upload ends.
        let wrong = UUID().uuidString.lowercased()
        try await store.createUpload(wrong)
        _ = try await store.append(wrong, body: Body(chunks: [Data("not what was promised".utf8)]), at: 0, limit: .max)
        let promised = Digest.of(Data("what was promised".utf8))
        await #expect(throws: StoreError.self) { _ = try await other.finishUpload(wrong, as: promised) }
        #expect(try await store.size(of: .blob(promised)) == nil)
        #expect(try await store.uploadSize(wrong) == nil)
        // A body over the limit is refused and what arrived before it is kept for a retry.
        let limited = UUID().uuidString.lowercased()
        try await store.createUpload(limited)
        await #expect(throws: StoreError.self) { _ = try await store.append(limited, body: Body(chunks: [Self.bytes(100)]), at: 0, limit: 10) }
        try await store.discardUpload(limited)
        #expect(try await store.uploadSize(limited) == nil)
        // An id that is not one of ours names no upload (never a path).
        await #expect(throws: StoreError.self) { try await store.createUpload("../../etc/passwd") }
    }

    @Test("named uploads: interrupted and resumed on another instance; other bytes or another digest are DIGEST_INVALID and leave the digest's blob as it was",
          arguments: backends)
    func namedUploads(_ backend: Backend) async throws {
        let (store, other) = try Self.open(backend)
        let data = Self.bytes(27 << 20, seed: 5), digest = Digest.of(data)
        let id = UUID().uuidString.lowercased()
        try await store.createUpload(id, digest: digest)
        // The connection drops after 13 MiB: what arrived in order is kept.
        await #expect(throws: Interrupted.Dropped.self) {
            _ = try await store.append(id, body: Interrupted(chunks: [data.prefix(5 << 20), data[(5 << 20)..<(13 << 20)]]), at: 0, limit: .max)
        }
        let kept = try #require(try await other.uploadSize(id))
        #expect(kept == 13 << 20, "every byte that arrived is kept (\(kept))")
        // Out of order: refused with the size the upload has, so the client knows where to resume.
        let early = await #expect(throws: StoreError.self) {
            _ = try await other.append(id, body: Body(chunks: [Data(data.suffix(from: Int(kept) + 1))]), at: kept + 1, limit: .max)
        }
        #expect(early?.kind == .badRange && early?.message.contains("has \(kept) bytes") == true, "\(String(describing: early))")
        #expect(try await other.append(id, body: Body(chunks: [Data(data.suffix(from: Int(kept)))]), at: kept, limit: .max) == Int64(data.count))
        let copiesBefore = (store as? S3BlobStore)?.copies ?? 0
        #expect(try await other.finishUpload(id, as: digest) == Int64(data.count))
        #expect(try await Self.read(store, .blob(digest)) == data)
        if let s3 = other as? S3BlobStore {
            #expect(s3.copies == copiesBefore, "a named upload assembles at the blob's key: nothing is copied")
        }

        // Other bytes under a digest that exists: refused, and the blob keeps its bytes.
        let attack = UUID().uuidString.lowercased()
        try await store.createUpload(attack, digest: digest)
        _ = try await store.append(attack, body: Body(chunks: [Self.bytes(20 << 20, seed: 6)]), at: 0, limit: .max)
        let poisoned = await #expect(throws: StoreError.self) { _ = try await other.finishUpload(attack, as: digest) }
        #expect(poisoned?.code == "DIGEST_INVALID")
        #expect(try await Self.read(store, .blob(digest)) == data, "the blob under the digest is untouched")
        #expect(try await store.uploadSize(attack) == nil, "the upload ends")
        // Bytes missing at the end: a sentence that says so, and the upload ends.
        let short = UUID().uuidString.lowercased()
        try await store.createUpload(short, digest: Digest.of(Data("whole".utf8)))
        _ = try await store.append(short, body: Body(chunks: [Data("who".utf8)]), at: 0, limit: .max)
        let missing = await #expect(throws: StoreError.self) { _ = try await other.finishUpload(short, as: Digest.of(Data("whole".utf8))) }
        #expect(missing?.message.contains("3 bytes") == true && missing?.message.contains("missing or differ") == true, "\(String(describing: missing))")
        // Other bytes under a digest nothing holds: nothing is kept under it.
        let promised = Digest.of(Data("promised".utf8))
        let fresh = UUID().uuidString.lowercased()
        try await store.createUpload(fresh, digest: promised)
        _ = try await store.append(fresh, body: Body(chunks: [Self.bytes(9 << 20, seed: 8)]), at: 0, limit: .max)
        await #expect(throws: StoreError.self) { _ = try await store.finishUpload(fresh, as: promised) }
        #expect(try await store.size(of: .blob(promised)) == nil)
        // Finishing as another digest than the one named (even the bytes' own): refused.
        let small = Data("small blob".utf8)
        let switched = UUID().uuidString.lowercased()
        try await store.createUpload(switched, digest: promised)
        _ = try await store.append(switched, body: Body(chunks: [small]), at: 0, limit: .max)
        let other_ = await #expect(throws: StoreError.self) { _ = try await other.finishUpload(switched, as: Digest.of(small)) }
        #expect(other_?.code == "DIGEST_INVALID" && other_?.message.contains("was started for \(promised)") == true, "\(String(describing: other_))")
        #expect(try await store.size(of: .blob(Digest.of(small))) == nil)
        #expect(try await store.size(of: .blob(promised)) == nil)
        #expect(try await store.list(under: "blobs/").map(\.key) == [.blob(digest)])
    }

    @Test("S3: an object over CopyObject's limit is copied in parts (UploadPartCopy)", .enabled(if: Backends.s3))
    func partCopy() async throws {
        let (first, _) = try Self.open(.s3)
        let store = try #require(first as? S3BlobStore)
        // 17 MiB over a 6 MiB limit: four UploadPartCopy requests of at most 5 MiB.
        store.copyLimit = 6 << 20
        store.copyPartSize = 5 << 20
        let data = Self.bytes(17 << 20, seed: 11)
        let id = UUID().uuidString.lowercased()
        try await store.createUpload(id)
        _ = try await store.append(id, body: Body(chunks: [data]), at: 0, limit: .max)
        let before = store.partCopies
        #expect(try await store.finishUpload(id, as: Digest.of(data)) == Int64(data.count))
        #expect(store.partCopies - before == 4)
        #expect(try await Self.read(store, .blob(Digest.of(data))) == data)
        #expect(try await Self.read(store, .blob(Digest.of(data)), Int64(5 << 20)...Int64((5 << 20) + 9)) == data[(5 << 20)...((5 << 20) + 9)])
    }

    @Test("a commit hashes the bytes as stored: an upload overwritten through another instance never commits under the first digest",
          arguments: backends)
    func commitHashesStoredBytes(_ backend: Backend) async throws {
        let (store, other) = try Self.open(backend)
        let a = Self.bytes(3 << 20, seed: 1), b = Self.bytes(3 << 20, seed: 2)
        let id = UUID().uuidString.lowercased()
        try await store.createUpload(id)
        _ = try await store.append(id, body: Body(chunks: [a]), at: 0, limit: .max)
        // A second writer at offset 0 through another replica (the routes allow one writer at a
        // time; the store must not trust a running hash whatever happened): refused, or it overwrote.
        _ = try? await other.append(id, body: Body(chunks: [b]), at: 0, limit: .max)
        if (try? await store.finishUpload(id, as: Digest.of(a))) != nil {
            #expect(try await Self.read(store, .blob(Digest.of(a))) == a, "the blob named by a's digest holds a's bytes")
        } else {
            #expect(try await store.size(of: .blob(Digest.of(a))) == nil)
        }
    }

    @Test("S3: presigned downloads, one clear error for refused credentials, 503 when unreachable", .enabled(if: Backends.s3))
    func s3Specifics() async throws {
        let (store, _) = try Self.open(.s3)
        let endpoint = try #require(Self.s3Endpoint)
        let data = Self.bytes(1 << 20, seed: 9)
        let digest = try await store.storeBlob(data)
        let url = try #require(try await store.redirectURL(for: .blob(digest), expires: 60, downloadName: nil))
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url.absoluteString), timeout: .seconds(30))
        #expect(response.status == .ok)
        #expect(Data(buffer: try await response.body.collect(upTo: 4 << 20)) == data, "the presigned URL needs no other credential")

        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("blobstore-\(UUID().uuidString)")
        let refused = try S3BlobStore(location: "s3://lathe/x", endpoint: endpoint, region: "us-east-1",
                                      credentials: .init(accessKey: "lathetest", secretKey: "not-the-secret"), spool: spool)
        let error = await #expect(throws: StoreError.self) { try await refused.check() }
        #expect(error?.message.contains("SignatureDoesNotMatch") == true || error?.message.contains("Access") == true, "\(String(describing: error))")
        #expect(error?.message.contains("not-the-secret") == false, "the secret is never shown")

        // Nothing listens on port 9 (discard) of loopback: the store answers 503, so clients retry.
        let gone = try S3BlobStore(location: "s3://lathe/x", endpoint: URL(string: "http://127.0.0.1:9")!, region: "us-east-1",
                                   credentials: .init(accessKey: "a", secretKey: "b"), spool: spool)
        let unreachable = await #expect(throws: StoreError.self) { _ = try await gone.size(of: .blob(digest)) }
        #expect(unreachable?.kind == .unavailable)
    }

    @Test("keys are built from checked parts only")
    func keys() {
        #expect(BlobKey.file("../escape") == nil && BlobKey.file("") == nil)
        #expect(BlobKey.output(token: String(repeating: "a", count: 48), name: "..") == nil)
        #expect(BlobKey.output(token: "short", name: "x.png") == nil)
        let output = BlobKey.output(token: String(repeating: "a", count: 48), name: "x.png")
        #expect(output != nil && BlobKey.parse(output!.path) == output)
        #expect(BlobKey.parse("blobs/sha256/../../x") == nil && BlobKey.parse("uploads/x") == nil)
    }

    @Test("the blob cache keeps fetched blobs only when their bytes match the digest", arguments: backends)
    func cacheVerifies(_ backend: Backend) async throws {
        let (store, _) = try Self.open(backend)
        let remote = WithoutLocalFiles(base: store)
        let good = try await store.storeBlob(Self.bytes(100_000))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("blobcache-\(UUID().uuidString)")
        let cache = BlobCache(store: remote, folder: folder)
        let file = try await cache.file(for: good)
        #expect(try Data(contentsOf: file) == Self.bytes(100_000))
        // Bytes altered in storage under the digest's name are never handed out as the blob.
        let altered = Digest.of(Data("what the digest promises".utf8))
        try await store.store(.blob(altered), data: Data("something else".utf8))
        await #expect(throws: StoreError.self) { _ = try await cache.file(for: altered) }
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("sha256/\(altered.hex)").path))
        // The store's own files (the filesystem backend) are checked too, once: before, they were used as they were.
        let direct = BlobCache(store: store, folder: folder.appendingPathComponent("direct"))
        await #expect(throws: StoreError.self) { _ = try await direct.file(for: altered) }
        if store.localFile(.blob(altered)) != nil {
            // What `/v2` checks before serving a local file as the digest.
            await #expect(throws: StoreError.self) { try await direct.verifyLocal(altered) }
        }
        #expect(try Data(contentsOf: try await direct.file(for: good)) == Self.bytes(100_000))
    }
}

/// A store seen as a remote one would be: no local files, so readers go through the cache.
struct WithoutLocalFiles: BlobStore {
    let base: any BlobStore
    func size(of key: BlobKey) async throws -> Int64? { try await base.size(of: key) }
    func read(_ key: BlobKey, range: ClosedRange<Int64>?, into write: (ByteBuffer) async throws -> Void) async throws {
        try await base.read(key, range: range, into: write)
    }
    func store(_ key: BlobKey, from file: URL) async throws { try await base.store(key, from: file) }
    func delete(_ key: BlobKey) async throws { try await base.delete(key) }
    func list(under prefix: String) async throws -> [BlobListing] { try await base.list(under: prefix) }
    func redirectURL(for key: BlobKey, expires: TimeInterval, downloadName: String?) async throws -> URL? { nil }
    func localFile(_ key: BlobKey) -> URL? { nil }
    func createUpload(_ id: String, digest: Digest?) async throws { try await base.createUpload(id, digest: digest) }
    func uploadSize(_ id: String) async throws -> Int64? { try await base.uploadSize(id) }
    func append<Body: AsyncSequence & Sendable>(_ id: String, body: Body, at offset: Int64, limit: Int64) async throws -> Int64
        where Body.Element == ByteBuffer {
        try await base.append(id, body: body, at: offset, limit: limit)
    }
    func finishUpload(_ id: String, as digest: Digest) async throws -> Int64 { try await base.finishUpload(id, as: digest) }
    func discardUpload(_ id: String) async throws { try await base.discardUpload(id) }
    func uploads(untouchedSince date: Date) async throws -> [String] { try await base.uploads(untouchedSince: date) }
}
