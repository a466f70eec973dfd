import Crypto
import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore
import NIOCore

/// Everything a request handler needs, passed in rather than global.
public struct Registry: Sendable {
    public var database: RegistryDatabase
    public var accounts: AccountStore
    public var models: ModelStore
    /// Registry blobs, uploaded files and output files (the `BlobStore` seam).
    public var blobs: any BlobStore
    /// This machine's own folder (environments, unpacked versions, instance work, partial
    /// uploads, the blob cache); replicas never share it.
    public var runtime: URL
    /// Work in progress under ``runtime``: partial uploads, files being fetched.
    public var scratch: URL { runtime.appendingPathComponent("tmp") }
    /// Registry blobs as local files, for unpacking versions and checking code layers.
    public var blobCache: BlobCache
    /// Whether blob downloads are answered with a redirect to the store where it has one.
    public var blobRedirect = true
    /// The URL clients reach the server at (for absolute `next` links and model URLs); known
    /// only once the server is listening when it was started on port 0.
    public let base: BaseURL
    public var baseURL: String { base.value }
    /// Where the other replicas reach this one (they relay a worker's reports about the
    /// instances this replica placed): `--replica-url`, else `http://HOST:PORT` as bound.
    public let replicaURL = BaseURL("")
    public var logger: Logger
    /// Every request made on a user's behalf (URL inputs, webhooks) goes through this, and so
    /// through the operator's egress policy.
    public var outbound = OutboundHTTP(policy: EgressPolicy())
    /// What pushed versions' requirements may name (checked when a manifest is pushed).
    public var requirements = RequirementPolicy()
    /// The most bytes one account's uploaded files (/v1/files, web forms) may take.
    public var fileQuota: Int64 = 1 << 30
    /// The most bytes one account's registry blobs (`/v2` pushes, counted once per digest) may take.
    public var storageQuota: Int64 = 100 << 30
    /// The largest single blob a `/v2` upload may make.
    public var maxBlobSize: Int64 = 20 << 30
    /// Proxies (nginx in front of replicas) whose `X-Forwarded-For` names the client.
    public var trustedProxies: [IPNetwork] = []
    /// Signs prediction stream URLs (``streamSignature(_:)``); the same on every replica once
    /// ``open(data:database:blobs:runtime:baseURL:logger:)`` loaded it from the database.
    public var streamKey = SymmetricKey(size: .bits256)
    /// The remote workers, kept in the metadata store (shared by every copy of this value).
    public let fleet: WorkerFleet

    public init(database: RegistryDatabase, blobs: any BlobStore, runtime: URL, baseURL: String, logger: Logger) {
        self.database = database
        self.accounts = AccountStore(database: database)
        self.models = ModelStore(database: database)
        self.blobs = blobs
        self.runtime = runtime
        self.blobCache = BlobCache(store: blobs, folder: runtime.appendingPathComponent("blob-cache"))
        self.base = BaseURL(baseURL)
        self.logger = logger
        self.fleet = WorkerFleet(store: WorkerStore(database: database))
    }

    /// Opens the registry: metadata in PostgreSQL when `database` is a URL, else in
    /// `registry.sqlite` under `data`; blobs in `blobs` when given, else files under `data`;
    /// this machine's own files under `runtime` (default `data/runtime`); PostgreSQL's
    /// connections on `eventLoops` when given (the server's own loop).
    public static func open(data: URL, database url: String? = nil, blobs: (any BlobStore)? = nil, runtime: URL? = nil,
                            baseURL: String, logger: Logger, eventLoops: (any EventLoopGroup)? = nil) async throws -> Registry {
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let runtime = runtime ?? data.appendingPathComponent("runtime")
        try FileManager.default.createDirectory(at: runtime.appendingPathComponent("tmp"), withIntermediateDirectories: true)
        let database = try await RegistryDatabase.open(url: url, data: data, logger: logger, eventLoops: eventLoops)
        var registry = Registry(database: database, blobs: try blobs ?? FilesystemBlobStore(root: data), runtime: runtime, baseURL: baseURL, logger: logger)
        registry.streamKey = SymmetricKey(data: try await ServerKeyStore(database: database).key("stream"))
        return registry
    }

    // MARK: - Access decisions shared by /v1 and /v2

}

/// The server's public URL, settable once the listening port is known.
public final class BaseURL: @unchecked Sendable {
    private let lock = NSLock()
    private var text: String

    package init(_ text: String) { self.text = text }

    public var value: String {
        get { lock.withLock { text } }
        set { lock.withLock { text = newValue.hasSuffix("/") ? String(newValue.dropLast()) : newValue } }
    }
}

extension Registry {
    /// The unguessable part of a prediction's stream URL (`urls.stream`, `?sig=`): an HMAC of
    /// its id under the server's stream key, so the URL opens that one stream without a token
    /// (as Replicate's does) while the id alone opens nothing.
    public func streamSignature(_ predictionID: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data("lathe-stream-v1:\(predictionID)".utf8), using: streamKey)
        return ByteEncoding.base64URL(code)
    }

    /// The path of a prediction's signed stream URL.
    public func streamPath(_ predictionID: String) -> String {
        "/v1/predictions/\(predictionID)/stream?sig=\(streamSignature(predictionID))"
    }
}

extension Registry {
    /// This replica's id, stored in `runtime/replica-id` and made on first start (one process
    /// uses a runtime folder at a time, so what a previous process of this id held died with it).
    public static func replicaID(in runtime: URL) -> String {
        let file = runtime.appendingPathComponent("replica-id")
        if let text = try? String(contentsOf: file, encoding: .utf8), text.hasPrefix("r-"), text.count < 64 {
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let id = "r-" + UUID().uuidString.lowercased().prefix(12)
        try? FileManager.default.createDirectory(at: runtime, withIntermediateDirectories: true)
        try? Data(id.utf8).write(to: file, options: .atomic)
        return id
    }

    public var replicaID: String { Registry.replicaID(in: runtime) }
}
