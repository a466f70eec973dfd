import Foundation
import ServiceLifecycle
import LatheArchive
import LatheRunner
import LatheSpec
import Logging

/// Decides where predictions run (DESIGN §6): one queue per version, instances cold-booted on
/// demand up to a per-version and a per-account limit, on the embedded worker or a remote one
/// that offers the version's hardware (preferring one that has the version warm or cached),
/// stopped again after an idle time.
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

    struct Job: Sendable {
        var id: String
        var creatorID: String
        /// The prediction as inserted; the scheduler keeps its final state in memory until written.
        var record: PredictionRecord
        /// The insert of its row, which the completion waits for (nil: the row exists).
        /// (Its value is true when the insert wrote the finished prediction: nothing to complete.)
        var inserted: Task<Bool, any Error>?
        var input: [String: JSONValue]
        var timeout: TimeInterval
        var checkSafety: Bool
        /// Whether the prediction has a webhook (events are not looked up otherwise).
        var hasWebhook: Bool
        /// The claim this replica holds on the prediction (every write names it).
        var claimID: String
        /// Runs after a worker was lost before the prediction produced anything (at most 2).
        var attempts = 0
        /// When it joined this replica's queue (a wait for hardware is counted from here).
        var queuedAt = Date()
        /// Lines the final logs start with (why it ran again).
        var preamble = ""
        /// The account the prediction runs for (fair share and instance limits count by it).
        var account: String { record.accountID ?? creatorID }
    }

    typealias Location = InstanceLocation

    final class Instance: @unchecked Sendable {
        let runner: any InstanceRunner
        let work: URL
        /// The account whose work booted it (counted against that account's instance limit).
        let account: String
        let location: Location
        /// The hardware it was booted for (a version whose hardware changes gets new instances).
        let sku: String
        /// The embedded worker's GPUs it holds (given back when it stops).
        var gpus: [GPU] = []
        /// Predictions it runs now, and how many it may run at once (the spec's `concurrency`).
        var running = 0
        let slots: Int
        /// Whether it runs anything (an instance that does is never idle).
        var busy: Bool { running > 0 }
        /// Whether it may take one more prediction.
        var hasRoom: Bool { running < slots }
        var lastUsed = Date()
        /// What setup() printed, until the first prediction on the instance shows it in its logs.
        var setupLogs = ""
        init(runner: any InstanceRunner, work: URL, account: String, location: Location, sku: String, slots: Int = 1) {
            self.slots = max(1, slots)
            self.runner = runner
            self.work = work
            self.account = account
            self.location = location
            self.sku = sku
        }
    }

    /// A version as loaded for running: its manifest and config, and where it comes from.
    struct LoadedVersion: Sendable {
        var manifest: Manifest
        var config: ModelConfig
        var manifestDigest: String
        var modelID: String
        var repository: String
        /// The SKU the model asks for (a deployment's own overrides it).
        var hardware: String
    }

    private let registry: Registry
    private let predictions: PredictionStore
    /// The shared queue in the database (claims, leases, recovery).
    private let queue: PredictionQueue
    /// Events to and from the other replicas, and who runs the singletons.
    public let events: any PredictionEvents
    /// This replica's name in claims (`claimed_by`): kept in its runtime folder, so a replica that
    /// restarts recognizes its own claims and recovers them at once instead of after the lease.
    public let replica: String
    /// The accounts change counter last read (see ``followAccountChanges()``).
    private var accountsCounter: Int64?
    /// The claims this replica holds, by prediction (renewed by the heartbeat).
    private var claims: [String: String] = [:]
    /// Delivers start, output, logs and completed events to predictions' webhooks.
    public nonisolated let webhooks: Webhooks
    /// Wakes streams following a prediction when its progress is written or it finishes.
    let signals = PredictionSignals()
    private let settings: Settings
    private let runtime: URL
    private var pools: [String: [Instance]] = [:]
    private var booting: [String: Int] = [:]
    /// The embedded worker's GPUs no instance holds.
    private var freeGPUs: [GPU] = []
    /// Boots in flight by where they run.
    private var bootingAt: [Location: Int] = [:]
    /// Predictions told they wait for hardware no worker offers.
    private var waitingForHardware: Set<String> = []
    /// Boots in flight by the account they are for.
    private var bootingFor: [String: Int] = [:]
    private var queues: [String: [Job]] = [:]
    private var versions: [String: LoadedVersion] = [:]
    private var running: [String: Instance] = [:]
    /// Input downloads in flight, by prediction (a cancel stops them).
    private var downloads: [String: Task<[String: JSONValue], any Error>] = [:]
    private var canceledDownloads: Set<String> = []
    private var completed: Set<String> = []
    /// Finished predictions whose completion is still being written: waiters answer from here,
    /// and readers look here first, so nobody waits on that write or sees an older row.
    private var unpersisted: [String: PredictionRecord] = [:]
    private var waiters: [String: [UUID: CheckedContinuation<Void, Never>]] = [:]
    /// Per-version instance bounds set by deployments (minimum kept warm, maximum to scale to),
    /// with the account that owns the deployment.
    private var bounds: [String: (min: Int, max: Int, account: String, hardware: String)] = [:]
    /// When a version whose setup failed may be booted again just to keep a deployment warm.
    private var warmRetry: [String: Date] = [:]

    public init(registry: Registry, settings: Settings, events: any PredictionEvents = LocalEvents()) {
        self.registry = registry
        self.predictions = PredictionStore(database: registry.database)
        self.queue = PredictionQueue(database: registry.database)
        self.events = events
        self.settings = settings
        self.runtime = settings.runtime ?? registry.runtime
        self.replica = Self.replicaID(in: runtime)
        self.webhooks = Webhooks(database: registry.database, outbound: registry.outbound, replica: replica)
        self.freeGPUs = settings.embeddedWorker ? settings.embeddedGPUs : []
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
        try await DeploymentRoutes.restore(registry: registry, scheduler: self)
        registry.fleet.setChangeHandler { [weak self] in Task { await self?.fleetChanged() } }
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
            PeriodicService("idle instances", every: 1) { await self.stopIdle() },
            PeriodicService("deployment minimums", every: 1, leader: isLeader) { await self.keepDeploymentsWarm() },
            PeriodicService("lease expiry", every: 5, leader: isLeader) { await self.expireLeases() },
            PeriodicService("retention", every: 5, leader: isLeader) { await self.removeExpiredData() },
            DrainOnShutdown { await self.shutdown() },
        ]
    }

    /// The id stored in `runtime/replica-id`, made on first start.
    static func replicaID(in runtime: URL) -> String { Registry.replicaID(in: runtime) }

    /// What another replica (or this one) told everyone.
    private func handle(_ event: RegistryEvent) async {
        switch event {
        case .queued: await adopt()
        case .finished(let id): finished(id)
        case .progress(let id): signals.changed(id)
        case .cancel(let id): if claims[id] != nil { try? await cancel(id) }
        case .cachesChanged: registry.database.caches.clear()
        }
    }

    /// A claim for a prediction this replica is creating (it runs what it takes in, unless it
    /// dies: then the lease runs out and another replica claims it).
    func newClaim(for id: String) -> (replica: String, id: String) {
        let claim = "\(replica):\(id):1"
        claims[id] = claim
        return (replica, claim)
    }

    /// Claims unclaimed waiting predictions while this replica has room for them.
    private func adopt() async {
        // An API-only replica with no worker of its own leaves the queue to those that have one.
        guard !places().isEmpty else { return }
        let queued = queues.values.reduce(0) { $0 + $1.count }
        let room = 2 * settings.maxInstances - queued
        guard room > 0, let claimed = try? await queue.claim(replica: replica, limit: room) else { return }
        for item in claimed {
            claims[item.record.id] = item.claimID
            do {
                guard let input = item.record.input.flatMap({ try? JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8)) }) else {
                    throw RegistryError(500, "the prediction's input could not be read")
                }
                try await enqueue(item.record, manifestDigest: nil, input: input, checkSafety: item.checkSafety, claimID: item.claimID)
            } catch {
                await endUnrun(item.record.id, claim: item.claimID, status: .failed, error: "\(error)", logs: item.record.logs)
            }
        }
    }

    /// Clears cached tokens and models when another process (`lathe admin`) changed accounts:
    /// it bumps a counter in the database, read here once a second.
    private func followAccountChanges() async {
        guard let counter = try? await registry.accounts.changeCounter() else { return }
        if let seen = accountsCounter, seen != counter { registry.database.caches.clear() }
        accountsCounter = counter
    }

    /// Renews this replica's leases, and stops what someone asked to cancel elsewhere.
    private func heartbeat() async {
        let held = Array(claims.values)
        do {
            try await queue.renew(held)
            for id in try await queue.cancelRequested(among: held) { try? await cancel(id) }
        } catch {
            registry.logger.warning("could not renew prediction leases", metadata: ["error": "\(RegistryDatabase.reason(error))"])
        }
        await adopt()
    }

    /// The leader requeues or fails the predictions of replicas that stopped renewing.
    private func expireLeases() async {
        guard let (requeued, failed) = try? await queue.expireLeases() else { return }
        // The replica that ran them is gone, so the leader announces their ending and sends their last webhook.
        for id in failed { await announceEnded(id, notified: false, webhook: true) }
        if !requeued.isEmpty {
            registry.logger.warning("requeued predictions of a lost replica", metadata: ["count": "\(requeued.count)"])
            await events.publish(.queued)
        }
    }

    /// Wakes waiters here and, scaled out, on the other replicas.
    private func publishFinished(_ id: String) async {
        finished(id)
        if registry.database.kind == .postgres { await events.publish(.finished(id)) }
    }

    /// Stops every instance (graceful shutdown).
    public func shutdown() {
        for instance in pools.values.flatMap({ $0 }) { instance.runner.terminate() }
        pools.removeAll()
    }

    // MARK: - Submitting and waiting

    /// Queues an inserted prediction; `input` is the validated input it runs with.
    /// `model`, when the caller has it, refreshes the hardware the version asks for.
    func enqueue(_ record: PredictionRecord, manifestDigest: String?, model: ModelRecord? = nil, input: [String: JSONValue], checkSafety: Bool = true,
                 inserted: Task<Bool, any Error>? = nil, claimID: String) async throws {
        let version = record.version
        try await load(version, manifestDigest: manifestDigest, modelID: record.modelID)
        if let model, versions[version]?.hardware != model.hardware { versions[version]?.hardware = model.hardware }
        let timeout = min(TimeInterval(versions[version]?.config.spec.timeout ?? 1800), settings.maxTimeout)
        queues[version, default: []].append(Job(id: record.id, creatorID: record.creatorID, record: record, inserted: inserted, input: input, timeout: timeout,
                                                checkSafety: checkSafety, hasWebhook: record.webhook != nil, claimID: claimID))
        pump(version)
    }

    /// A finished prediction whose completion is still being written.
    func pending(_ id: String) -> PredictionRecord? {
        unpersisted[id]
    }

    /// Reads a version's manifest and config once.
    private func load(_ version: String, manifestDigest: String?, modelID: String) async throws {
        if versions[version] == nil {
            guard let model = try await registry.models.model(id: modelID) else { throw RegistryError(404, "the model of version \(version) is gone") }
            let digest: String
            if let manifestDigest {
                digest = manifestDigest
            } else {
                guard let found = try await registry.models.manifestDigest(modelID: modelID, version: version) else {
                    throw RegistryError(404, "version \(version) is gone")
                }
                digest = found
            }
            guard let manifestDigest = Digest(parsing: digest) else { throw RegistryError(500, "bad manifest digest") }
            let manifest = try JSONDecoder().decode(Manifest.self, from: try await registry.blobs.data(.blob(manifestDigest)))
            let config = try JSONDecoder().decode(ModelConfig.self, from: try await registry.blobs.data(.blob(manifest.config.digest)))
            versions[version] = LoadedVersion(manifest: manifest, config: config, manifestDigest: digest, modelID: modelID,
                                              repository: model.repository, hardware: model.hardware)
        }
    }

    /// Returns when the prediction has finished or `seconds` have passed. A waiter is one
    /// continuation; its timer is left to run out on its own (cancelling it would cost a wake-up
    /// on the answer's path).
    func wait(for id: String, seconds: TimeInterval) async {
        if completed.contains(id) { return }
        let token = UUID()
        Task { [weak self] in
            try? await Task.sleep(seconds: seconds)
            await self?.expire(id, token)
        }
        if registry.database.kind == .postgres, claims[id] == nil {
            // Running on another replica: its NOTIFY wakes this waiter; a notification lost
            // while the events connection reconnected is caught by looking at the row each second.
            let store = predictions
            Task { [weak self] in
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline {
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                    guard let self, await self.isWaiting(id, token) else { return }
                    if let row = try? await store.prediction(id), row.isTerminal { await self.finished(id); return }
                }
            }
        }
        await withCheckedContinuation { waiters[id, default: [:]][token] = $0 }
    }

    private func isWaiting(_ id: String, _ token: UUID) -> Bool { waiters[id]?[token] != nil }

    private func isRunning(_ id: String) -> Bool { running[id] != nil }

    private func expire(_ id: String, _ token: UUID) {
        if let waiter = waiters[id]?.removeValue(forKey: token) { waiter.resume() }
        if waiters[id]?.isEmpty == true { waiters.removeValue(forKey: id) }
    }

    func finished(_ id: String) {
        signals.changed(id)
        completed.insert(id)
        if completed.count > 10_000 { completed.removeAll() }
        for waiter in (waiters.removeValue(forKey: id) ?? [:]).values { waiter.resume() }
    }

    /// Cancels a queued or running prediction, wherever it is: here, unclaimed in the queue, or
    /// on another replica (which hears the event, or sees the flag at its next heartbeat).
    func cancel(_ id: String) async throws {
        for (version, waiting) in queues {
            if let job = waiting.first(where: { $0.id == id }) {
                queues[version] = waiting.filter { $0.id != id }
                await endUnrun(id, claim: job.claimID, inserted: job.inserted, status: .canceled, logs: job.preamble)
                return
            }
        }
        if claims[id] == nil {
            if try await queue.cancelUnclaimed(id) {
                await announceEnded(id, notified: false, webhook: true)
            } else {
                try await queue.requestCancel(id)
                await events.publish(.cancel(id))
            }
            return
        }
        if let download = downloads[id] {
            canceledDownloads.insert(id)
            download.cancel()
            return
        }
        running[id]?.runner.cancel(id: id)
    }

    // MARK: - Instances

    private func pump(_ version: String) {
        let sku = hardware(of: version)
        if let stale = pools[version]?.filter({ !$0.busy && $0.sku != sku }), !stale.isEmpty {
            // The model or deployment now asks for other hardware: idle instances on the old go.
            for instance in stale { retire(instance) }
            pools[version]?.removeAll { instance in stale.contains { $0 === instance } }
        }
        // Placement counts free slots: an instance with `concurrency: N` takes N at once.
        while let job = queues[version]?.first, let instance = pools[version]?.first(where: { $0.hasRoom && $0.runner.isRunning && $0.sku == sku }) {
            queues[version]?.removeFirst()
            instance.running += 1
            running[job.id] = instance
            Task { await run(job, on: instance, version: version) }
        }
        let waiting = queues[version]?.count ?? 0
        let mine = (pools[version]?.count ?? 0) + (booting[version] ?? 0)
        let limit = bounds[version]?.max ?? settings.maxInstancesPerVersion
        // Each instance being booted will take `concurrency` of the waiting ones.
        let slots = max(1, versions[version]?.config.spec.concurrency ?? 1)
        let needWork = waiting > (booting[version] ?? 0) * slots
        // Deployment minimums are kept by the leader only, so replicas do not each keep them.
        let needWarm = events.isLeader && mine < (bounds[version]?.min ?? 0)
        guard needWork || needWarm, mine < limit else { return }
        // The new instance is for the account of the first job it will take, or the deployment's.
        // Work is held to the per-account limit; warm minimums were held to theirs when the
        // deployment was made.
        guard let account = needWork ? queues[version]?.dropFirst((booting[version] ?? 0) * slots).first?.account : bounds[version]?.account else { return }
        if needWork && instanceCount(of: account) >= perAccountLimit {
            // At its limit, an account's waiting work may replace its own idle instance of
            // another version (never someone else's).
            guard evictOwnIdle(except: version, of: account) else { return }
        }
        var target = place(version, sku: sku)
        if target == nil {
            guard offered(sku) else {
                if needWork && places().isEmpty && registry.database.kind == .postgres {
                    // Replicas share the queue: one with a worker takes it.
                    Task { await handBack(version) }
                } else if needWork {
                    tellWaitingForHardware(version, sku: sku)
                }
                return
            }
            // Everything that offers the hardware is full: waiting work (never a warm minimum)
            // makes room by stopping an idle instance of another version, so a waiting account
            // is never starved.
            guard needWork, evictIdle(except: version, for: account, sku: sku) else { return }
            target = place(version, sku: sku)
        }
        guard let target else { return }
        booting[version, default: 0] += 1
        bootingFor[account, default: 0] += 1
        bootingAt[target, default: 0] += 1
        Task { await boot(version, account: account, at: target) }
    }

    /// Instances held or being booted for `account`.
    private func instanceCount(of account: String) -> Int {
        pools.values.reduce(0) { $0 + $1.filter { $0.account == account }.count } + (bootingFor[account] ?? 0)
    }

    /// The most instances one account may hold: the operator's limit, or all but one slot.
    private var perAccountLimit: Int {
        settings.maxInstancesPerAccount ?? max(1, totalCapacity - 1)
    }

    // MARK: - Placement

    /// Instances the whole fleet (the embedded worker and every remote one) may run at once.
    private var totalCapacity: Int {
        (settings.embeddedWorker ? settings.maxInstances : 0) + registry.fleet.workers.reduce(0) { $0 + $1.capacity }
    }

    /// The SKU a version runs on: its deployment's, else its model's.
    private func hardware(of version: String) -> String {
        bounds[version]?.hardware ?? versions[version]?.hardware ?? "cpu"
    }

    /// Every place that could run instances, with what it offers and holds, and how it stands
    /// for `version` (warm: it runs an instance of it).
    private func places(for version: String? = nil) -> [Place] {
        var result: [Place] = []
        if settings.embeddedWorker { result.append(place(.embedded, skus: embeddedSKUs, cached: [], capacity: settings.maxInstances, version: version)) }
        for member in registry.fleet.workers {
            result.append(place(.worker(member.id), skus: member.hardware.skus, cached: member.cached, capacity: member.capacity, version: version))
        }
        return result
    }

    private func place(_ location: Location, skus: [String], cached: Set<String>, capacity: Int, version: String?) -> Place {
        let load = pools.values.reduce(0) { $0 + $1.filter { $0.location == location }.count } + (bootingAt[location] ?? 0)
        let warm = version.map { version in pools[version]?.contains { $0.location == location } ?? false } ?? false
        return Place(location: location, skus: skus, cached: cached, capacity: capacity, load: load, warm: warm)
    }

    /// What the embedded worker offers: `cpu` and one SKU per model of this machine's GPUs.
    private var embeddedSKUs: [String] {
        HardwareInventory(cpus: 0, memoryBytes: 0, gpus: settings.embeddedGPUs, labels: []).skus
    }

    /// Whether anything in the fleet offers `sku` (full or not).
    private func offered(_ sku: String) -> Bool {
        Placement.offered(sku, by: places())
    }

    /// Where a new instance of `version` goes (``Placement``); nil when every place offering
    /// `sku` is full.
    private func place(_ version: String, sku: String) -> Location? {
        // A GPU instance goes on the embedded worker only while one of its GPUs of that model is free.
        let candidates = places(for: version).filter { place in
            place.location != .embedded || !sku.hasPrefix("gpu-") || freeGPUs.contains { $0.sku == sku }
        }
        return Placement.choose(version: version, sku: sku, among: candidates)
    }

    /// Gives `version`'s waiting predictions back to the shared queue (this replica runs no
    /// models and has no worker) and tells the other replicas.
    private func handBack(_ version: String) async {
        let jobs = queues.removeValue(forKey: version) ?? []
        var released = false
        for job in jobs {
            _ = try? await job.inserted?.value
            if (try? await queue.release(job.id, claim: job.claimID)) == true {
                claims.removeValue(forKey: job.id)
                released = true
            } else {
                queues[version, default: []].append(job)
            }
        }
        if released { await events.publish(.queued) }
    }

    /// Tells the predictions of `version` (once each) that no worker offers its hardware.
    private func tellWaitingForHardware(_ version: String, sku: String) {
        for job in queues[version] ?? [] where !waitingForHardware.contains(job.id) {
            waitingForHardware.insert(job.id)
            let store = predictions, inserted = job.inserted, wait = Int(settings.hardwareWait)
            Task {
                _ = try? await inserted?.value
                try? await store.setStartingLogs(job.id, logs: "Waiting for hardware \(sku): no worker offers it yet. The prediction fails if none does within \(wait) s.\n")
            }
        }
    }

    /// Fails predictions that waited longer than the operator allows for hardware no worker offers.
    private func failUnplaceable() async {
        let now = Date()
        for (version, jobs) in queues where !jobs.isEmpty {
            let sku = hardware(of: version)
            guard !offered(sku) else { continue }
            let expired = jobs.filter { now.timeIntervalSince($0.queuedAt) > settings.hardwareWait }
            guard !expired.isEmpty else { continue }
            queues[version] = jobs.filter { job in !expired.contains { $0.id == job.id } }
            for job in expired {
                waitingForHardware.remove(job.id)
                await endUnrun(job.id, claim: job.claimID, inserted: job.inserted, status: .failed,
                               error: "No worker offers hardware \(sku) (waited \(Int(settings.hardwareWait)) s): start a worker with `lathe worker --hardware \(sku)`, or set the model's hardware to one GET /v1/hardware lists.",
                               logs: job.preamble)
            }
        }
    }

    /// Counts silent workers lost: their instances end (the predictions on them run again or
    /// fail), and what waited is placed again.
    private func expireWorkers() async {
        for name in registry.fleet.expire() {
            registry.logger.warning("worker lost", metadata: ["worker": "\(name)"])
        }
        await failUnplaceable()
    }

    /// A worker registered or its cache changed: place what waits.
    private func fleetChanged() async {
        await adopt()
        pumpWaiting()
        if events.isLeader { keepDeploymentsWarm() }
    }

    /// The SKUs the fleet offers, for `GET /v1/hardware`, with a name for each.
    func hardwareOffered() -> [(sku: String, name: String)] {
        var names: [String: String] = [:]
        if settings.embeddedWorker {
            names["cpu"] = "CPU"
            for gpu in settings.embeddedGPUs where names[gpu.sku] == nil { names[gpu.sku] = "\(gpu.model) GPU" }
        }
        for member in registry.fleet.workers {
            for sku in member.hardware.skus where names[sku] == nil {
                names[sku] = sku == "cpu" ? "CPU" : member.hardware.gpus.first(where: { $0.sku == sku }).map { "\($0.model) GPU" } ?? sku
            }
        }
        return names.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    private func boot(_ version: String, account: String, at location: Location) async {
        defer {
            booting[version, default: 1] -= 1
            bootingFor[account, default: 1] -= 1
            bootingAt[location, default: 1] -= 1
            if bootingFor[account] == 0 { bootingFor.removeValue(forKey: account) }
            if bootingAt[location] == 0 { bootingAt.removeValue(forKey: location) }
        }
        guard let loaded = versions[version], let digest = Digest(parsing: version) else { return }
        let sku = hardware(of: version)
        let work = runtime.appendingPathComponent("work/\(UUID().uuidString)")
        let started = Date()
        let buildLog = BuildLog()
        let flusher = Task { [weak self] in
            // Build output reaches the predictions waiting for this version twice a second.
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 500_000_000)
                if let text = buildLog.takeIfChanged() { await self?.showBuildLogs(version, text) }
            }
        }
        defer { flusher.cancel() }
        var lostWorker: String?
        // The embedded worker's GPUs this instance takes; given back unless it becomes ready.
        var heldGPUs: [GPU] = []
        defer { freeGPUs += heldGPUs }
        do {
            let runner: any InstanceRunner
            let result: SetupResult
            switch location {
            case .embedded:
                if sku.hasPrefix("gpu-") {
                    guard let index = freeGPUs.firstIndex(where: { $0.sku == sku }) else {
                        throw RegistryError(503, "no \(sku) GPU of this machine is free")
                    }
                    heldGPUs = [freeGPUs.remove(at: index)]
                }
                let embedded = EmbeddedWorker(runtime: runtime, sandbox: settings.sandbox, build: settings.build, blobCache: registry.blobCache)
                let process = try await embedded.prepare(digest, manifest: loaded.manifest, config: loaded.config, work: work,
                                                         gpus: heldGPUs) { buildLog.append($0) }
                result = try await process.start()
                runner = process
            case .worker(let workerID):
                guard let member = registry.fleet.workers.first(where: { $0.id == workerID }) else {
                    lostWorker = "the worker chosen for it left"
                    throw RegistryError(503, "the worker chosen for it left")
                }
                let remote = RemoteInstance(id: "i-" + UUID().uuidString.lowercased().prefix(12), workerID: workerID, workerName: member.name,
                                            tokenID: member.tokenID, modelID: loaded.modelID, work: work, fleet: registry.fleet)
                registry.fleet.add(remote)
                result = await remote.boot(WorkerVersion(id: version, repository: loaded.repository, manifestDigest: loaded.manifestDigest),
                                           gpus: sku.hasPrefix("gpu-") ? 1 : 0) { buildLog.replace($0) }
                lostWorker = remote.lostReason
                runner = remote
            }
            if let text = buildLog.takeIfChanged() { await showBuildLogs(version, text) }
            switch result {
            case .ready(_, let setupLogs):
                let instance = Instance(runner: runner, work: work, account: account, location: location, sku: sku,
                                        slots: loaded.config.spec.concurrency)
                instance.setupLogs = setupLogs
                instance.gpus = heldGPUs
                heldGPUs = []
                pools[version, default: []].append(instance)
                registry.logger.info("instance ready", metadata: ["version": "\(version)", "seconds": "\(Date().timeIntervalSince(started))",
                                                                  "where": "\(location)"])
            case .failed(let error, let logs):
                runner.terminate()
                if let lostWorker {
                    // Not the model's fault: it is placed again elsewhere.
                    registry.logger.warning("boot lost with its worker", metadata: ["version": "\(version)", "reason": "\(lostWorker)"])
                } else {
                    setupFailed(version, error: "\(error)", logs: logs)
                    await failQueue(version, error: "Model setup failed: \(error)", logs: logs)
                }
            }
        } catch {
            if lostWorker == nil {
                setupFailed(version, error: "\(error)", logs: buildLog.text)
                await failQueue(version, error: "Model setup failed: \(error)", logs: buildLog.text)
            }
        }
        pump(version)
        pumpWaiting()
    }

    /// Shows an environment build's output as the logs of the predictions waiting for it.
    private func showBuildLogs(_ version: String, _ text: String) async {
        for job in queues[version] ?? [] {
            _ = try? await job.inserted?.value
            try? await predictions.setStartingLogs(job.id, logs: text)
        }
    }

    /// The stored input with every `secret` input's value replaced by asterisks, as Replicate
    /// shows them; nil when the spec has no secret inputs.
    static func redactingSecrets(_ input: String?, spec: ModelSpec?) -> String? {
        let secrets = Set(spec?.inputs.filter { $0.type == .secret }.map(\.name) ?? [])
        guard !secrets.isEmpty, let input, var values = try? JSONDecoder().decode([String: JSONValue].self, from: Data(input.utf8)) else { return nil }
        for name in secrets where values[name] != nil && values[name] != .null { values[name] = .string("**********") }
        return String(decoding: JSONValue.object(values).serialized(), as: UTF8.self)
    }

    /// Tells the operator, and holds off warm boots for a while so a broken model does not loop.
    private func setupFailed(_ version: String, error: String, logs: String) {
        warmRetry[version] = Date().addingTimeInterval(30)
        registry.logger.error("model setup failed", metadata: ["version": "\(version)", "error": "\(error)",
                                                             "logs": "\(logs.suffix(2000))"])
    }

    /// Boots instances again for deployments below their minimum (after a crash or a failed setup).
    private func keepDeploymentsWarm() {
        let now = Date()
        for version in bounds.keys where warmRetry[version].map({ $0 < now }) ?? true { pump(version) }
    }

    private func failQueue(_ version: String, error: String, logs: String) async {
        let jobs = queues.removeValue(forKey: version) ?? []
        for job in jobs {
            await endUnrun(job.id, claim: job.claimID, inserted: job.inserted, status: .failed, error: error, logs: job.preamble + logs)
        }
    }

    /// How a prediction this replica holds ends, whatever ends it: what ``end(_:)`` writes.
    struct Ending: Sendable {
        var id: String
        var claim: String
        var status: PredictionStatus
        var output: String? = nil
        var error: String? = nil
        var logs: String
        /// `predict_time` is running time only (no queueing, no boot); `{}` for one that never ran.
        var metrics = "{}"
        var startedAt: String? = nil
        var completedAt: String? = nil
        /// The input with its secrets redacted, replacing the stored one.
        var input: String? = nil
        /// The insert of its row, waited for first (true when it wrote the finished row itself).
        var inserted: Task<Bool, any Error>? = nil
        /// Folders of the prediction's inputs and outputs on this machine.
        var cleanup: [URL] = []
        /// Whether it may have a webhook (false skips the lookup: most predictions have none).
        var webhook = true
    }

    /// The one ending of a prediction (DESIGN §5), whatever ended it — succeeded, failed,
    /// canceled, timed out, lost, `Cancel-After`, or never run (canceled while queued, setup
    /// failed, no hardware). In this order: the final row under its claim (metrics included),
    /// the claim released, waiters here and on the other replicas woken, the `completed`
    /// webhook scheduled, the local files removed. Returns whether the row was written (false:
    /// the claim was lost, and what another replica wrote stands).
    @discardableResult
    private func end(_ ending: Ending) async -> Bool {
        let id = ending.id
        var written = false
        if let inserted = ending.inserted {
            switch await inserted.result {
            case .success(let finished): written = finished
            case .failure: registry.logger.error("prediction row was not written", metadata: ["prediction": "\(id)"])
            }
        }
        // A row the insert wrote finished belongs to a prediction whose id nobody else knew yet:
        // only this replica's waiters need waking.
        var notified = written
        if !written {
            written = (try? await predictions.complete(id, status: ending.status, output: ending.output, error: ending.error, logs: ending.logs,
                                                       metrics: ending.metrics, startedAt: ending.startedAt, completedAt: ending.completedAt,
                                                       input: ending.input, claim: ending.claim)) ?? false
            // On PostgreSQL the completing statement itself tells every replica (NOTIFY).
            notified = written && registry.database.kind == .postgres
            if !written {
                // The lease ran out (this replica stalled) and the prediction was requeued or
                // failed elsewhere: what was found here is not written over it.
                registry.logger.warning("late completion refused: the claim was lost", metadata: ["prediction": "\(id)"])
            }
        }
        claims.removeValue(forKey: id)
        await announceEnded(id, notified: notified, webhook: written && ending.webhook)
        for folder in ending.cleanup { try? FileManager.default.removeItem(at: folder) }
        return written
    }

    /// The part of the ending after the row: waiters woken here and (unless the completing
    /// statement `notified` them) on the other replicas, then the `completed` webhook. The
    /// queue's sweeps, which end what a lost replica or a restart left (their rows written by
    /// one conditional statement each), end through here too.
    private func announceEnded(_ id: String, notified: Bool, webhook: Bool) async {
        if notified { finished(id) } else { await publishFinished(id) }
        if webhook { await notify("completed", id) }
    }

    /// The ending of a prediction that never ran (canceled while queued, its model's setup
    /// failed, no hardware, unreadable).
    private func endUnrun(_ id: String, claim: String, inserted: Task<Bool, any Error>? = nil, status: PredictionStatus, error: String? = nil,
                          logs: String) async {
        await end(Ending(id: id, claim: claim, status: status, error: error, logs: logs, inserted: inserted))
    }

    /// Sends a webhook event with the prediction as it now stands.
    private func notify(_ event: String, _ id: String) async {
        guard let record = try? await predictions.prediction(id), record.webhook != nil else { return }
        await webhooks.deliver(event, record: record, body: PredictionShape(registry: registry).json(record))
    }

    private func run(_ queued: Job, on instance: Instance, version: String) async {
        var opened = queued
        // What setup() printed opens the logs of the first prediction the instance runs (as
        // Cog's first prediction shows it), so a model's loading messages are not lost.
        opened.preamble += instance.setupLogs
        instance.setupLogs = ""
        let job = opened
        let store = predictions
        let id = job.id
        var record = job.record
        record.status = .processing
        let startedAt = Timestamp.now()
        record.startedAt = startedAt
        let claim = job.claimID
        if job.hasWebhook {
            _ = try? await job.inserted?.value
            try? await store.markProcessing(id, at: startedAt, claim: claim)
            await notify("start", id)
        } else {
            // Off the answer's path, once the row exists. Readers see "processing" only when the
            // row says so: a restart fails what was processing and runs what was starting, so a
            // client must never see processing before it is written.
            // A prediction that is done within 50 ms is written once, by its completion.
            let inserted = job.inserted
            Task { [weak self] in
                _ = try? await inserted?.value
                try? await Task.sleep(nanoseconds: 50_000_000)
                guard await self?.isRunning(id) == true else { return }
                try? await store.markProcessing(id, at: startedAt, claim: claim)
            }
        }
        let outputs = instance.work.appendingPathComponent("outputs/\(job.id)")
        // Streamed items and logs reach the database at most every 200 ms, in order (each write
        // appends its delta to the event log); what comes within 200 ms of a write follows 200 ms
        // after it, so a lone early log line never waits for the end.
        let signals = self.signals
        let progress = Progress(logs: job.preamble) { progress, snapshot, kind in
            progress.write {
                try? await store.updateProgress(id, output: snapshot.output, logs: snapshot.logs, delta: snapshot.delta,
                                                startedAt: startedAt, claim: claim)
                signals.changed(id)
                if let notifier = job.hasWebhook ? self : nil { await notifier.notify(kind, id) }
            }
        }
        var outcome: PredictionOutcome
        do {
            // Downloads count against the prediction's timeout and stop on cancel.
            let deadline = Date().addingTimeInterval(job.timeout)
            let spec = versions[version]!.config.spec, directory = instance.work.appendingPathComponent("inputs/\(job.id)")
            let registry = self.registry, timeout = job.timeout, creator = job.creatorID, raw = job.input
            let localizing = Task {
                try await RegistryInputs.localize(raw, spec: spec, directory: directory, owner: creator, registry: registry, timeout: timeout)
            }
            downloads[id] = localizing
            let result = await localizing.result
            downloads.removeValue(forKey: id)
            if canceledDownloads.remove(id) != nil {
                outcome = PredictionOutcome(status: .canceled)
            } else {
                let input = try result.get()
                outcome = await instance.runner.predict(id: job.id, input: input, context: job.record.requestContext, outputDirectory: outputs,
                                                         timeout: max(0.001, deadline.timeIntervalSinceNow),
                                                         checkSafety: job.checkSafety) { event in progress.add(event) }
                progress.close()
            }
        } catch {
            outcome = PredictionOutcome(status: .failed, error: "\(error)")
        }
        if instance.runner.takeRetry(id) {
            // Its worker was lost before the prediction produced anything: run it again
            // elsewhere, twice at most; after that it fails with the worker's name.
            if job.attempts < 2 {
                running.removeValue(forKey: id)
                instance.running -= 1
                pools[version]?.removeAll { $0 === instance }
                try? FileManager.default.removeItem(at: instance.work.appendingPathComponent("inputs/\(job.id)"))
                var again = job
                again.attempts += 1
                let note = "\(outcome.error ?? "its worker was lost"); running it again (attempt \(again.attempts + 1) of 3)\n"
                again.preamble += note
                queues[version, default: []].insert(again, at: 0)
                let store = predictions, inserted = job.inserted, preamble = again.preamble
                Task {
                    _ = try? await inserted?.value
                    try? await store.setStartingLogs(id, logs: preamble)
                }
                registry.logger.warning("prediction requeued after its worker was lost", metadata: ["prediction": "\(id)", "attempt": "\(again.attempts + 1)"])
                pump(version)
                pumpWaiting()
                return
            }
            outcome.error = (outcome.error ?? "its worker was lost") + " (it was tried 3 times)"
        }
        // What it streamed before it was canceled, timed out or failed stays its output.
        let output = try? await OutputFiles.publish(outcome.output ?? progress.emitted, from: outputs, registry: registry)
        record.status = PredictionStatus(outcome.status)
        record.output = output.map { String(decoding: $0.serialized(), as: UTF8.self) }
        record.error = outcome.error
        record.logs = job.preamble + outcome.logs
        // The model's own metrics (`cog.emit_metric`), then Lathe's, which it may not replace.
        var metrics = outcome.metrics ?? [:]
        metrics["predict_time"] = .number(outcome.predictTime ?? 0)
        record.metrics = String(decoding: JSONValue.object(metrics).serialized(), as: UTF8.self)
        record.completedAt = Timestamp.now()
        // Secrets are needed until the prediction has run (a restart reruns queued ones), not after.
        let redacted = Self.redactingSecrets(record.input, spec: versions[version]?.config.spec)
        if let redacted { record.input = redacted }
        running.removeValue(forKey: job.id)
        instance.running -= 1
        instance.lastUsed = Date()
        if !instance.runner.isRunning {
            // A crashed instance is replaced on the next prediction.
            pools[version]?.removeAll { $0 === instance }
        }
        // Waiters answer from memory while the completion is written; readers look here first.
        unpersisted[id] = record
        finished(id)
        pump(version)
        pumpWaiting()
        await end(Ending(id: id, claim: claim, status: record.status, output: record.output, error: record.error, logs: record.logs,
                         metrics: record.metrics ?? "{}", startedAt: startedAt, completedAt: record.completedAt, input: redacted,
                         inserted: job.inserted, cleanup: [instance.work.appendingPathComponent("inputs/\(job.id)"), outputs],
                         webhook: job.hasWebhook))
        unpersisted.removeValue(forKey: id)
    }

    /// API predictions lose input, output, logs and files after the retention time; the object stays.
    private func removeExpiredData() async {
        let cutoff = Timestamp.string(Date().addingTimeInterval(-settings.dataRetention))
        for record in (try? await predictions.expired(before: cutoff)) ?? [] {
            await OutputFiles.delete(in: record.output.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }, registry: registry)
            try? await predictions.removeData(record.id)
        }
    }

    /// Removes unpacked copies of versions that no instance runs or is booting (they are
    /// unpacked again on the next cold boot), so deleted and unused versions free their space.
    func removeUnusedUnpackedVersions() {
        let folder = runtime.appendingPathComponent("instances")
        let inUse = Set(pools.keys).union(booting.filter { $0.value > 0 }.keys).compactMap { Digest(parsing: $0)?.hex }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where !name.hasPrefix(".") && !inUse.contains(name) {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
    }

    /// Keeps `min` instances of a deployment's version warm and lets it scale to `max`.
    func setBounds(version: String, manifestDigest: String, modelID: String, min: Int, max: Int, account: String, hardware: String) async throws {
        try await load(version, manifestDigest: manifestDigest, modelID: modelID)
        bounds[version] = (min, Swift.max(max, min, 1), account, hardware)
        pump(version)
    }

    /// The operator's limit on instances one account's deployments keep warm.
    var warmLimit: Int { settings.maxWarmPerAccount }

    func clearBounds(version: String) {
        bounds.removeValue(forKey: version)
    }

    /// Stops the least recently used idle instance of another version to make room for work of
    /// `account`; false when there is none. Instances above their deployment's minimum go first;
    /// then an idle instance kept only for another account's deployment minimum gives way (it is
    /// booted again when capacity frees).
    private func evictIdle(except version: String, for account: String, sku: String) -> Bool {
        let offering = Set(places().filter { $0.skus.contains(sku) }.map(\.location))
        let idle = pools.flatMap { entry in entry.value.filter { !$0.busy && entry.key != version && offering.contains($0.location) }.map { (entry.key, $0) } }
        let spare = idle.filter { (pools[$0.0]?.count ?? 0) > (bounds[$0.0]?.min ?? 0) }
        let warmForOthers = idle.filter { bounds[$0.0].map { $0.account != account } ?? false }
        guard let (owner, victim) = (spare.isEmpty ? warmForOthers : spare).min(by: { $0.1.lastUsed < $1.1.lastUsed }) else { return false }
        retire(victim)
        try? FileManager.default.removeItem(at: victim.work)
        pools[owner]?.removeAll { $0 === victim }
        if pools[owner]?.isEmpty == true { pools.removeValue(forKey: owner) }
        return true
    }

    /// Stops `account`'s least recently used idle instance of another version that is not
    /// kept for a deployment's minimum; false when there is none.
    private func evictOwnIdle(except version: String, of account: String) -> Bool {
        let idle = pools.flatMap { entry in
            entry.value.filter { !$0.busy && entry.key != version && $0.account == account && (pools[entry.key]?.count ?? 0) > (bounds[entry.key]?.min ?? 0) }
                .map { (entry.key, $0) }
        }
        guard let (owner, victim) = idle.min(by: { $0.1.lastUsed < $1.1.lastUsed }) else { return false }
        retire(victim)
        try? FileManager.default.removeItem(at: victim.work)
        pools[owner]?.removeAll { $0 === victim }
        if pools[owner]?.isEmpty == true { pools.removeValue(forKey: owner) }
        return true
    }

    /// Stops an instance leaving its pool and gives back the embedded worker's GPUs it held.
    private func retire(_ instance: Instance) {
        instance.runner.terminate()
        freeGPUs += instance.gpus
        instance.gpus = []
    }

    private func stopIdle() {
        let now = Date()
        for (version, instances) in pools {
            let keep = bounds[version]?.min ?? 0
            // Instances that crashed or whose worker was lost go at once.
            let gone = instances.filter { !$0.busy && !$0.runner.isRunning }
            let alive = instances.filter { instance in !gone.contains { $0 === instance } }
            var idle = alive.filter { !$0.busy && now.timeIntervalSince($0.lastUsed) > settings.idleTimeout }
            idle = Array(idle.prefix(Swift.max(0, alive.count - keep))) + gone
            for instance in idle {
                retire(instance)
                try? FileManager.default.removeItem(at: instance.work)
            }
            pools[version] = instances.filter { instance in !idle.contains { $0 === instance } }
            if pools[version]?.isEmpty == true { pools.removeValue(forKey: version) }
        }
        pumpWaiting()
    }

    /// Gives every version with queued predictions a chance at freed capacity, fairly: versions
    /// whose first waiting job's account holds the fewest instances go first, then the oldest.
    private func pumpWaiting() {
        let waiting = queues.compactMap { entry in entry.value.first.map { (version: entry.key, job: $0) } }
        let order = waiting.sorted { a, b in
            let (ca, cb) = (instanceCount(of: a.job.account), instanceCount(of: b.job.account))
            return ca != cb ? ca < cb : a.job.record.createdAt < b.job.record.createdAt
        }
        for entry in order { pump(entry.version) }
    }
}
