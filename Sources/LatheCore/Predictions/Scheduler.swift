import Foundation
import ServiceLifecycle
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// The execution core (DESIGN §5–§6): one queue per version, instances cold-booted on demand up
/// to a per-version and a per-account limit on whatever host offers the version's hardware,
/// stopped again after an idle time. Its state lives here; each job has its own file:
///
/// | piece | file | does |
/// |---|---|---|
/// | intake | `Scheduler+Intake` | queues a prediction, loads its version, cancels wherever it is |
/// | claim keeper | `Scheduler+Claims` | claims, renews and hands back work in the shared queue |
/// | decider | ``Decider`` (pure), `Scheduler+Decisions` | plans starts, boots and evictions; applies the plan |
/// | instance pool | `Scheduler+Pool`, ``FleetWorkerHost`` | boots on a worker of the fleet, retires idle and crashed instances |
/// | executor | `Scheduler+Executor` | runs one prediction on an instance, streams its progress |
/// | completer | `Scheduler+Completer` | the one ending of every prediction |
/// | waiters | `Scheduler+Waiters` | `Prefer: wait`, cancels and streams waiting for an end |
public actor Scheduler {
    public struct Settings: Sendable {
        public var maxInstancesPerVersion = 2
        /// This machine's GPUs, which the embedded worker offers (as `lathe worker` offers its
        /// own: one `gpu-…` SKU per model) and gives whole to the instances that ask for one.
        public var embeddedGPUs: [GPU] = []
        /// Most instances the embedded worker runs.
        public var maxInstances = 4
        /// Whether this server runs models itself; `lathe serve --no-worker` leaves running to
        /// remote workers.
        public var embeddedWorker = true
        /// `lathe --version`, as the embedded worker registers it.
        public var serverVersion = "dev"
        /// How long a prediction waits for hardware no worker offers before it fails.
        public var hardwareWait: TimeInterval = 600
        /// Most instances one account's work may hold at once (its predictions' boots and its
        /// deployments' warm minimums together), so one account cannot take every slot; nil:
        /// the fleet's capacity less one.
        public var maxInstancesPerAccount: Int? = 2
        /// Most instances one account's deployments may keep warm in all.
        public var maxWarmPerAccount = 2
        public var idleTimeout: TimeInterval = 300
        /// The longest timeout a model may ask for.
        public var maxTimeout: TimeInterval = 30 * 60
        public var sandbox: Sandbox?
        /// Limits and requirement policy of environment builds (their sandbox is `sandbox`).
        public var build = EnvironmentBuild(sandbox: nil)
        /// This machine's folder for environments, unpacked versions and instance work (default
        /// DATA/runtime). Replicas sharing a data folder each need their own.
        public var runtime: URL?
        /// How long API predictions keep their input, output, logs and files.
        public var dataRetention: TimeInterval = 3600
        public init() {}
    }

    package struct Job: Sendable {
        package var id: String
        package var creatorID: String
        /// The prediction as inserted; the scheduler keeps its final state in memory until written.
        package var record: PredictionRecord
        /// The insert of its row, which the completion waits for (nil: the row exists).
        /// (Its value is true when the insert wrote the finished prediction: nothing to complete.)
        package var inserted: RowInsert?
        package var input: [String: JSONValue]
        package var timeout: TimeInterval
        package var checkSafety: Bool
        /// Whether the prediction has a webhook (events are not looked up otherwise).
        var hasWebhook: Bool
        /// The claim this replica holds on the prediction (every write names it).
        package var claimID: String
        /// Runs after a worker was lost before the prediction produced anything (at most 2).
        package var attempts = 0
        /// When it joined this replica's queue (a wait for hardware is counted from here).
        var queuedAt = Date()
        /// Lines the final logs start with (why it ran again).
        var preamble = ""
        /// The account the prediction runs for (fair share and instance limits count by it).
        package var account: String { record.accountID ?? creatorID }
    }

    package typealias Location = InstanceLocation

    package final class Instance: @unchecked Sendable {
        /// Names it in the decider's view and plans.
        package let key: Int
        package let runner: any InstanceRunner
        package let work: URL
        /// The account whose work booted it (counted against that account's instance limit).
        package let account: String
        package let location: Location
        /// The hardware it was booted for (a version whose hardware changes gets new instances).
        package let sku: String
        /// The GPUs it holds, by SKU (free again when it stops).
        package var gpus: [String] = []
        /// Predictions it runs now, and how many it may run at once (the spec's `concurrency`).
        package var running = 0
        package let slots: Int
        /// Whether it runs anything (an instance that does is never idle).
        package var busy: Bool { running > 0 }
        /// Whether it may take one more prediction.
        var hasRoom: Bool { running < slots }
        package var lastUsed = Date()
        /// What setup() printed, until the first prediction on the instance shows it in its logs.
        package var setupLogs = ""
        package init(key: Int, runner: any InstanceRunner, work: URL, account: String, location: Location, sku: String, slots: Int = 1) {
            self.key = key
            self.slots = max(1, slots)
            self.runner = runner
            self.work = work
            self.account = account
            self.location = location
            self.sku = sku
        }
    }

    /// A version as loaded for running: its manifest and config, and where it comes from.
    package struct LoadedVersion: Sendable {
        package var manifest: Manifest
        package var config: ModelConfig
        package var manifestDigest: String
        package var modelID: String
        package var repository: String
        /// The SKU the model asks for (a deployment's own overrides it).
        package var hardware: String
    }

    package let registry: Registry
    package let predictions: PredictionStore
    /// The shared queue in the database (claims, leases, recovery).
    package let queue: PredictionQueue
    /// Events to and from the other replicas, and who runs the singletons.
    public let events: any PredictionEvents
    /// This replica's name in claims (`claimed_by`): kept in its runtime folder, so a replica that
    /// restarts recognizes its own claims and recovers them at once instead of after the lease.
    public let replica: String
    /// The accounts change counter last read (see ``followAccountChanges()``).
    var accountsCounter: Int64?
    /// The claims this replica holds, by prediction (renewed by the heartbeat).
    package var claims: [String: String] = [:]
    /// Delivers start, output, logs and completed events to predictions' webhooks.
    public nonisolated let webhooks: Webhooks
    /// Wakes streams following a prediction when its progress is written or it finishes.
    package nonisolated let signals = PredictionSignals()
    package let settings: Settings
    package let runtime: URL
    /// The worker inside this server, a member of the fleet (nil with `settings.embeddedWorker` off).
    let embedded: EmbeddedWorker?
    var pools: [String: [Instance]] = [:]
    package var booting: [String: Int] = [:]
    /// GPUs taken by boots in flight, by place (one SKU per GPU).
    package var bootingGPUs: [Location: [String]] = [:]
    /// When this replica last asked the others for room, by SKU.
    var roomWantedAt: [String: Date] = [:]
    /// The last key given to an instance.
    var nextInstanceKey = 0
    /// Boots in flight by where they run.
    var bootingAt: [Location: Int] = [:]
    /// Predictions told they wait for hardware no worker offers.
    var waitingForHardware: Set<String> = []
    /// Boots in flight by the account they are for.
    var bootingFor: [String: Int] = [:]
    package var queues: [String: [Job]] = [:]
    package var versions: [String: LoadedVersion] = [:]
    package var running: [String: Instance] = [:]
    /// Input downloads in flight, by prediction (a cancel stops them).
    package var downloads: [String: Task<[String: JSONValue], any Error>] = [:]
    var canceledDownloads: Set<String> = []
    package var completed: Set<String> = []
    /// Finished predictions whose ending this replica is writing: readers look here first (so
    /// nobody sees an older row), and once it is written its waiters are handed it from here.
    var unpersisted: [String: PredictionRecord] = [:]
    /// Waiters for a prediction's end, each given the finished record when this replica has it.
    var waiters: [String: [UInt64: Waiter]] = [:]
    /// Tells one waiter from another (a counter: a UUID would read /dev/urandom per wait).
    var lastWaiter: UInt64 = 0
    /// Per-version instance bounds set by deployments (minimum kept warm, maximum to scale to),
    /// with the account that owns the deployment.
    package var bounds: [String: (min: Int, max: Int, account: String, hardware: String)] = [:]
    /// When a version whose setup failed may be booted again just to keep a deployment warm.
    var warmRetry: [String: Date] = [:]

    public init(registry: Registry, settings: Settings, events: any PredictionEvents = LocalEvents()) {
        self.registry = registry
        self.predictions = PredictionStore(database: registry.database)
        self.queue = PredictionQueue(database: registry.database)
        self.events = events
        self.settings = settings
        self.runtime = settings.runtime ?? registry.runtime
        self.replica = Self.replicaID(in: runtime)
        self.webhooks = Webhooks(database: registry.database, outbound: registry.outbound, replica: replica)
        let logger = registry.logger
        if settings.embeddedWorker {
            // Named after this replica (its id is kept across restarts): a restarted server
            // replaces its earlier self in the fleet at once.
            let hardware = HardwareInventory(cpus: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: Int64(clamping: ProcessInfo.processInfo.physicalMemory),
                                             gpus: settings.embeddedGPUs, labels: [])
            let registration = WorkerRegistration(name: "embedded in \(replica)", version: settings.serverVersion, hardware: hardware,
                                                  capacity: settings.maxInstances, cached: [])
            embedded = EmbeddedWorker(runtime: runtime, sandbox: settings.sandbox, build: settings.build, blobCache: registry.blobCache,
                                      fleet: registry.fleet, registration: registration) { logger.info("\($0)", metadata: ["worker": "embedded"]) }
        } else {
            embedded = nil
        }
    }

    /// Joins the other replicas (events), recovers after a restart of the only server (SQLite:
    /// queued predictions run again, in-flight ones fail with a reason) and claims what waits.
    /// The background work runs in ``SchedulerService``, in the server's service group.
    public func start() async throws {
        events.subscribe { [weak self] event in await self?.handle(event) }
        let events = self.events
        registry.database.caches.setChangeHandler { Task { await events.publish(.cachesChanged) } }
        let (requeued, failed) = try await queue.recoverAfterRestart(replica: registry.database.kind == .sqlite ? nil : replica)
        // Upload writer leases this replica's previous process held died with it: free them now
        // (a client resuming a push need not wait for them to lapse).
        try await registry.models.releaseUploadWriters(heldBy: replica)
        for id in failed { await announceEnded(id, notified: false, webhook: true) }
        if !requeued.isEmpty { await events.publish(.queued) }
        try await restoreDeployments()
        registry.fleet.connect(events: events, replica: replica, url: { [registry] in registry.replicaURL.value }, logger: registry.logger)
        registry.fleet.setChangeHandler { [weak self] in Task { await self?.fleetChanged() } }
        try await embedded?.join { [weak self] id in await self?.versions[id] }
        try? await registry.fleet.refresh()
        await adopt()
    }

    /// The scheduler's background work, one swift-service-lifecycle service per chore (DESIGN
    /// §5): claims renewed and queued work adopted, accounts changed elsewhere followed, lost
    /// workers and idle instances ended on every replica; deployment minimums, lease expiry and
    /// retention on the leader only; and, at graceful shutdown, every instance stopped.
    public nonisolated func services() -> [any Service] {
        let isLeader: @Sendable () -> Bool = { [events] in events.isLeader }
        return [
            PeriodicService("prediction claims", every: 2) { await self.heartbeat() },
            PeriodicService("account changes", every: 1) { await self.followAccountChanges() },
            PeriodicService("worker expiry", every: 1) { await self.expireWorkers() },
            PeriodicService("embedded worker heartbeat", every: registry.fleet.settings.heartbeat) { await self.embedded?.heartbeat() },
            PeriodicService("idle instances", every: 1) { await self.stopIdle() },
            PeriodicService("deployment minimums", every: 1, leader: isLeader) { await self.keepDeploymentsWarm() },
            PeriodicService("lease expiry", every: 5, leader: isLeader) { await self.expireLeases() },
            PeriodicService("retention", every: 5, leader: isLeader) { await self.removeExpiredData() },
            DrainOnShutdown { await self.shutdown() },
        ]
    }

    /// The id stored in `runtime/replica-id`, made on first start.
    package static func replicaID(in runtime: URL) -> String { Registry.replicaID(in: runtime) }

    /// What another replica (or this one) told everyone.
    package func handle(_ event: RegistryEvent) async {
        switch event {
        case .queued: await adopt()
        case .finished(let id): finished(id)
        case .progress(let id): signals.changed(id)
        case .cancel(let id): if claims[id] != nil { try? await cancel(id) }
        case .cachesChanged: registry.database.caches.clear()
        case .workerCommands(let worker): registry.fleet.commandsWaiting(for: worker)
        case .workerLost(let worker, let why): registry.fleet.lostElsewhere(worker, why)
        case .fleetChanged:
            try? await registry.fleet.refresh()
            await fleetChanged()
        case .roomWanted(let sku):
            apply(Decider.yieldRoom(fleetView(), sku: sku, now: Date(), minIdle: 1))
        }
    }

    /// Stops every instance (graceful shutdown): the embedded worker's at once, whatever
    /// commands are still on their way to it.
    public func shutdown() async {
        for instance in pools.values.flatMap({ $0 }) { instance.runner.terminate() }
        pools.removeAll()
        await embedded?.stopAll()
    }

}
