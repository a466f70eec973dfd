import Foundation
import ServiceLifecycle

/// Keeps the disk bounded (issue: "disk fills without bound"): files past their `expires_at`,
/// uploads of either kind abandoned for longer than `uploadMaxAge`, and unpacked versions no
/// instance uses are removed every `interval` seconds. Runs as a swift-service-lifecycle service
/// beside the HTTP server and stops with it.
public struct Housekeeping: Service {
    public struct Settings: Sendable {
        /// An upload (OCI or /v1/files) untouched for this long is abandoned.
        public var uploadMaxAge: TimeInterval = 24 * 3600
        public var interval: TimeInterval = 60
        public init() {}
    }

    let registry: Registry
    let scheduler: Scheduler
    let settings: Settings

    /// Whether this replica runs the sweeps now (the leader, scaled out).
    let isLeader: @Sendable () -> Bool

    public init(registry: Registry, scheduler: Scheduler, settings: Settings, isLeader: @escaping @Sendable () -> Bool = { true }) {
        self.registry = registry
        self.scheduler = scheduler
        self.settings = settings
        self.isLeader = isLeader
    }

    public func run() async throws {
        // A graceful shutdown cancels the wait between sweeps, so the server stops at once.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if isLeader() { await sweep() } else { await scheduler.removeUnusedUnpackedVersions() }
                try await Task.sleep(seconds: settings.interval)
            }
        }
    }

    /// One pass of every sweep (also called by tests through the interval).
    func sweep() async {
        let now = Date()
        do {
            let files = FileStore(database: registry.database)
            for file in try await files.expired(before: Timestamp.string(now)) {
                try? FileManager.default.removeItem(at: FileRoutes.path(file, registry: registry))
                try await files.delete(file)
            }
        } catch {
            registry.logger.error("removing expired files failed", metadata: ["error": "\(error)"])
        }
        let cutoff = now.addingTimeInterval(-settings.uploadMaxAge)
        for id in registry.blobs.uploads(untouchedSince: cutoff) {
            registry.blobs.discardUpload(id)
            try? await registry.models.deleteUpload(id: id)
        }
        FileRoutes.removePartialUploads(untouchedSince: cutoff, registry: registry)
        try? await RateCounterStore(database: registry.database).removeOld(before: Timestamp.string(now.addingTimeInterval(-120)))
        try? await SigninAttemptStore(database: registry.database).removeOld(before: Timestamp.string(now.addingTimeInterval(-900)))
        // Streams start from the row, so the event log only has to reach back a few minutes.
        try? await PredictionStore(database: registry.database).removeEvents(before: Timestamp.string(now.addingTimeInterval(-600)))
        await scheduler.removeUnusedUnpackedVersions()
    }
}
