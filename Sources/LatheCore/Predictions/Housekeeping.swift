import Foundation
import ServiceLifecycle
import LatheStore

/// Keeps the disk bounded (issue: "disk fills without bound"): files past their `expires_at`,
/// uploads of either kind abandoned for longer than `uploadMaxAge`, and unpacked versions no
/// instance uses are removed every `interval` seconds. Runs as a swift-service-lifecycle service
/// beside the HTTP server and stops with it.
public struct Housekeeping: Service {
    public struct Settings: Sendable {
        /// An upload (OCI or /v1/files) untouched for this long is abandoned.
        public var uploadMaxAge: TimeInterval = 24 * 3600
        public var interval: TimeInterval = 60
        /// Seconds between garbage collections of the blob store (nil: never).
        public var collectionInterval: TimeInterval? = 3600
        public init() {}
    }

    package let registry: Registry
    package let scheduler: Scheduler
    package let settings: Settings

    /// Whether this replica runs the sweeps now (the leader, scaled out).
    package let isLeader: @Sendable () -> Bool

    public init(registry: Registry, scheduler: Scheduler, settings: Settings, isLeader: @escaping @Sendable () -> Bool = { true }) {
        self.registry = registry
        self.scheduler = scheduler
        self.settings = settings
        self.isLeader = isLeader
    }

    public func run() async throws {
        // A graceful shutdown cancels the wait between sweeps, so the server stops at once.
        try? await cancelWhenGracefulShutdown {
            // The first collection waits one interval: a server that just started has nothing to free.
            var lastCollection = Date()
            while !Task.isCancelled {
                if isLeader() { await sweep() } else { await scheduler.removeUnusedUnpackedVersions() }
                if let every = settings.collectionInterval, isLeader(), Date().timeIntervalSince(lastCollection) >= every {
                    lastCollection = Date()
                    await collectGarbage()
                }
                try await Task.sleep(seconds: settings.interval)
            }
        }
    }

    /// Removes what nothing refers to from the blob store (the leader only: one at a time).
    func collectGarbage() async {
        do {
            let report = try await GarbageCollector(registry: registry).collect()
            if !report.removed.isEmpty {
                registry.logger.info("garbage collection", metadata: ["removed": "\(report.removed.count)", "bytes": "\(report.bytes)"])
            }
        } catch {
            registry.logger.error("garbage collection failed", metadata: ["error": "\(error)"])
        }
    }

    /// One pass of every sweep (also called by tests through the interval).
    package func sweep() async {
        let now = Date()
        do {
            let files = FileStore(database: registry.database)
            for file in try await files.expired(before: Timestamp.string(now)) {
                if let key = BlobKey.file(file) { try? await registry.blobs.delete(key) }
                try await files.delete(file)
            }
        } catch {
            registry.logger.error("removing expired files failed", metadata: ["error": "\(error)"])
        }
        let cutoff = now.addingTimeInterval(-settings.uploadMaxAge)
        for id in (try? await registry.blobs.uploads(untouchedSince: cutoff)) ?? [] {
            try? await registry.blobs.discardUpload(id)
            try? await registry.models.deleteUpload(id: id)
        }
        Self.removePartialUploads(untouchedSince: cutoff, registry: registry)
        try? await RateCounterStore(database: registry.database).removeOld(before: Timestamp.string(now.addingTimeInterval(-120)))
        try? await SigninAttemptStore(database: registry.database).removeOld(before: Timestamp.string(now.addingTimeInterval(-900)))
        // Streams start from the row, so the event log only has to reach back a few minutes.
        try? await PredictionStore(database: registry.database).removeEvents(before: Timestamp.string(now.addingTimeInterval(-600)))
        // Ended deliveries stay a day for the operator's eyes.
        try? await WebhookDeliveryStore(database: registry.database).removeFinished(before: now.addingTimeInterval(-86_400))
        await scheduler.removeUnusedUnpackedVersions()
    }

    /// Removes partial uploads of `/v1/files` left by a crash or a dropped connection.
    static func removePartialUploads(untouchedSince date: Date, registry: Registry) {
        let folder = registry.scratch.appendingPathComponent("files")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix(".partial-") {
            let url = folder.appendingPathComponent(name)
            if let modified = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date, modified < date {
                try? FileManager.default.removeItem(at: url)
            }
        }
    }

}
