import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import LatheStore
import LatheWorker

/// The worker inside `lathe serve` (DESIGN §6: one machine needs nothing else). It is the code
/// `lathe worker` runs (``WorkerInstances``), given commands in process instead of by long poll,
/// reporting to the server in process instead of over HTTP, and unpacking versions from the
/// registry's own blob store instead of pulling them. The scheduler places on it through the
/// same ``RemoteInstance`` as on any worker of the fleet.
package final class EmbeddedWorker: InstanceHost, WorkerChannel, @unchecked Sendable {
    private let source: InProcessWorkSource
    private let instances: WorkerInstances
    private let lock = NSLock()
    /// Commands not yet handed to the worker, in the order they were sent.
    private var queue: [WorkerCommand] = []
    private var draining = false

    /// Instances work under `runtime/work`; `gpus` are this machine's GPUs it gives out.
    package init(runtime: URL, sandbox: Sandbox?, build: EnvironmentBuild, blobCache: BlobCache, gpus: [GPU],
                 log: @escaping @Sendable (String) -> Void) {
        source = InProcessWorkSource(home: runtime, blobCache: blobCache)
        instances = WorkerInstances(source: source, folder: runtime, gpus: gpus, settings: .init(sandbox: sandbox, build: build), log: log)
    }

    package func boot(_ request: BootRequest, log: BuildLog) async throws -> BootedInstance {
        let instance = RemoteInstance(id: "i-" + UUID().uuidString.lowercased().prefix(12), workerID: "embedded", workerName: "embedded",
                                      tokenID: "", modelID: request.loaded.modelID, work: request.work, channel: self, place: "this server")
        let version = WorkerVersion(id: request.version, repository: request.loaded.repository, manifestDigest: request.loaded.manifestDigest)
        source.add(instance, version: version, digest: request.digest, manifest: request.loaded.manifest, config: request.loaded.config)
        let setup = await instance.boot(version, gpus: request.gpus, sku: request.sku) { log.replace($0) }
        return BootedInstance(runner: instance, setup: setup, lost: instance.notTheModel)
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

    /// Stops every instance now, whatever commands are still on their way (graceful shutdown).
    package func stopAll() async {
        await instances.stopAll()
    }

    package func forget(_ instance: RemoteInstance) {
        source.remove(instance.id)
    }
}

/// The embedded worker's source: versions unpacked from the registry's blob store (its own
/// files, or verified copies in the blob cache), and reports handed straight to the instance
/// the scheduler waits on, as the worker routes hand over a remote worker's.
final class InProcessWorkSource: WorkSource, @unchecked Sendable {
    private struct Version {
        var digest: Digest
        var manifest: Manifest
        var config: ModelConfig
        /// The instances booted with it: it is forgotten with the last of them.
        var instances: Set<String> = []
    }

    let home: URL
    /// Events go over at once: there is no request to save.
    let batchInterval: TimeInterval = 0
    private let blobCache: BlobCache
    private let lock = NSLock()
    private var instances: [String: RemoteInstance] = [:]
    private var versions: [String: Version] = [:]

    init(home: URL, blobCache: BlobCache) {
        self.home = home
        self.blobCache = blobCache
    }

    func add(_ instance: RemoteInstance, version: WorkerVersion, digest: Digest, manifest: Manifest, config: ModelConfig) {
        lock.withLock {
            instances[instance.id] = instance
            versions[version.manifestDigest, default: Version(digest: digest, manifest: manifest, config: config)].instances.insert(instance.id)
        }
    }

    func remove(_ id: String) {
        lock.withLock {
            instances.removeValue(forKey: id)
            for (key, version) in versions where version.instances.contains(id) {
                versions[key]?.instances.remove(id)
                if versions[key]?.instances.isEmpty == true { versions.removeValue(forKey: key) }
            }
        }
    }

    /// How many versions it keeps (each one an instance's, booting or running).
    var versionCount: Int { lock.withLock { versions.count } }

    private func instance(_ id: String) throws -> RemoteInstance {
        guard let instance = lock.withLock({ instances[id] }) else { throw Refused(description: "the server no longer runs instance \(id)") }
        return instance
    }

    func acquire(_ version: WorkerVersion) async throws -> (PreparedModel, note: String?) {
        guard let known = lock.withLock({ versions[version.manifestDigest] }) else {
            throw Refused(description: "the server did not name version \(version.id) for this boot")
        }
        // The layers as local files (the store's own, or verified copies in the blob cache).
        var files: [Digest: URL] = [:]
        for layer in known.manifest.layers { files[layer.digest] = try await blobCache.file(for: layer.digest) }
        let layerFiles = files, instances = home.appendingPathComponent("instances")
        // Unpacking blocks a thread for as long as it takes: its own thread, never an actor's.
        let prepared = try await onOwnThread {
            try PreparedModel.unpack(version: known.digest, manifest: known.manifest, config: known.config,
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
