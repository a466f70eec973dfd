import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import LatheStore
import LatheWorker

/// The worker inside `lathe serve` (DESIGN §6: one machine needs nothing else). It is a member of
/// the fleet like any `lathe worker`: it registers in the shared store, heartbeats with the
/// instances it runs, is counted lost when silent, and runs instances with the code `lathe
/// worker` runs (``WorkerInstances``). The scheduler places on it as on any worker. Only its
/// transport differs: the fleet hands it commands in process instead of by long poll, its
/// reports go straight to the instance the scheduler waits on instead of through the worker
/// routes, and versions are unpacked from the registry's own blob store instead of pulled. For
/// that reason its row names this replica as its home, and no other replica places on it.
package final class EmbeddedWorker: LocalWorker, @unchecked Sendable {
    /// The token id it registers under: never one a worker token has (those are `wt-…`), so no
    /// request to the worker routes can speak for it.
    static let tokenID = "embedded"

    private let source: InProcessWorkSource
    private let instances: WorkerInstances
    private let fleet: WorkerFleet
    private let registration: WorkerRegistration
    private let log: @Sendable (String) -> Void
    private let lock = NSLock()
    /// Commands not yet handed to the worker, in the order they were sent.
    private var queue: [WorkerCommand] = []
    private var draining = false

    /// Instances work under `runtime/work`; `registration` is what it offers (this machine's
    /// GPUs among its hardware, which it gives out whole).
    package init(runtime: URL, sandbox: Sandbox?, build: EnvironmentBuild, blobCache: BlobCache, fleet: WorkerFleet,
                 registration: WorkerRegistration, log: @escaping @Sendable (String) -> Void) {
        self.fleet = fleet
        self.registration = registration
        self.log = log
        source = InProcessWorkSource(home: runtime, blobCache: blobCache, fleet: fleet)
        instances = WorkerInstances(source: source, folder: runtime, gpus: registration.hardware.gpus,
                                    settings: .init(sandbox: sandbox, build: build), log: log)
    }

    /// The id it is registered under now (nil before ``join(versions:)``).
    package var id: String? { source.workerID }

    /// Registers in the fleet; `versions` gives the scheduler's loaded version for an id (what a
    /// boot names: its manifest and config).
    package func join(versions: @escaping @Sendable (String) async -> Scheduler.LoadedVersion?) async throws {
        source.setVersions(versions)
        try await register()
    }

    private func register() async throws {
        // What ran under an earlier registration was counted lost with it.
        await instances.registered()
        let registered = try await fleet.register(registration, tokenID: Self.tokenID, local: self)
        log("registered as \(registered.id) (\(registration.name)): offers \(registration.hardware.skus.joined(separator: ", ")), \(registration.capacity) instance(s)")
    }

    /// What `lathe worker` sends every few seconds: the instances it runs (crashed ones reaped
    /// first). When the fleet forgot it (silent too long), it registers again.
    package func heartbeat() async {
        do {
            guard let id = source.workerID, try await fleet.touch(id, tokenID: Self.tokenID) != nil else {
                if source.workerID != nil { log("the fleet no longer knows the embedded worker; registering again") }
                try await register()
                return
            }
            await instances.reapCrashed()
            try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: await instances.instanceIDs))
        } catch {
            log("the embedded worker's heartbeat failed: \(RegistryDatabase.reason(error))")
        }
    }

    package func joined(as id: String) {
        source.workerID = id
    }

    /// Hands commands over one at a time, in order (a stop frees its GPU before a later boot asks).
    package func send(_ command: WorkerCommand) {
        let start = lock.withLock { () -> Bool in
            queue.append(command)
            defer { draining = true }
            return !draining
        }
        guard start else { return }
        HotPath.task { [self] in
            while let next = lock.withLock({ () -> WorkerCommand? in
                if queue.isEmpty {
                    draining = false
                    return nil
                }
                return queue.removeFirst()
            }) {
                await instances.handle(next)
            }
        }
    }

    /// Stops every instance now, whatever commands are still on their way, and leaves the fleet
    /// (graceful shutdown).
    package func stopAll() async {
        await instances.stopAll()
        if let id = source.workerID { await fleet.leave(id) }
    }
}

/// The embedded worker's source: versions unpacked from the registry's blob store (its own
/// files, or verified copies in the blob cache), and reports handed straight to the instance
/// the scheduler waits on (found in the fleet, as the worker routes find a remote worker's).
final class InProcessWorkSource: WorkSource, @unchecked Sendable {
    let home: URL
    /// Events go over at once: there is no request to save.
    let batchInterval: TimeInterval = 0
    private let blobCache: BlobCache
    private let fleet: WorkerFleet
    private let lock = NSLock()
    private var registeredID: String?
    private var versions: @Sendable (String) async -> Scheduler.LoadedVersion? = { _ in nil }

    init(home: URL, blobCache: BlobCache, fleet: WorkerFleet) {
        self.home = home
        self.blobCache = blobCache
        self.fleet = fleet
    }

    /// The worker's id in the fleet.
    var workerID: String? {
        get { lock.withLock { registeredID } }
        set { lock.withLock { registeredID = newValue } }
    }

    func setVersions(_ lookup: @escaping @Sendable (String) async -> Scheduler.LoadedVersion?) {
        lock.withLock { versions = lookup }
    }

    private func instance(_ id: String) throws -> RemoteInstance {
        guard let worker = workerID, let instance = fleet.instance(id, on: worker) else {
            throw Refused(description: "the server no longer runs instance \(id)")
        }
        return instance
    }

    func acquire(_ version: WorkerVersion) async throws -> (PreparedModel, note: String?) {
        let lookup = lock.withLock { versions }
        guard let digest = Digest(parsing: version.id), let known = await lookup(version.id), known.manifestDigest == version.manifestDigest else {
            throw Refused(description: "the server does not run version \(version.id) now")
        }
        // The layers as local files (the store's own, or verified copies in the blob cache).
        var files: [Digest: URL] = [:]
        for layer in known.manifest.layers { files[layer.digest] = try await blobCache.file(for: layer.digest) }
        let layerFiles = files, instances = home.appendingPathComponent("instances")
        // Unpacking blocks a thread for as long as it takes: its own thread, never an actor's.
        let prepared = try await onOwnThread {
            try PreparedModel.unpack(version: digest, manifest: known.manifest, config: known.config,
                                     blobURL: { layerFiles[$0] ?? URL(fileURLWithPath: "/nonexistent") }, instances: instances)
        }
        return (prepared, nil)
    }

    /// Unpacked versions are removed by the scheduler once no instance runs them.
    func release(_ version: WorkerVersion) async {}

    func report(instance id: String, _ report: InstanceReport) async throws {
        try instance(id).report(report)
    }

    func fetchInput(instance id: String, assignment: String, path: String, to target: URL, limit: Int64) async throws {
        guard let file = try instance(id).inputFile(assignment, path: path) else { throw Refused(description: "assignment \(assignment) is not held") }
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: target)
        // Same disk: a link, not a copy.
        do { try FileManager.default.linkItem(at: file, to: target) } catch { try FileManager.default.copyItem(at: file, to: target) }
    }

    func sendEvents(instance id: String, assignment: String, _ events: [WorkerEvent]) async throws {
        guard try instance(id).events(assignment, events) else { throw Refused(description: "assignment \(assignment) is not held") }
    }

    func sendOutput(instance id: String, assignment: String, name: String, file: URL) async throws {
        guard let target = try instance(id).outputFile(assignment, name: name) else { throw Refused(description: "assignment \(assignment) is not held") }
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: file, to: target)
    }

    func complete(instance id: String, assignment: String, _ completion: WorkerCompletion) async throws {
        guard try instance(id).complete(assignment, completion.outcome, instanceStopped: completion.instanceStopped == true) else {
            throw Refused(description: "assignment \(assignment) is not held")
        }
    }

    /// The server no longer holds what a report names.
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }
}
