import Foundation
import ServiceLifecycle
import LatheArchive
import LatheRunner
import LatheSpec
import Logging

/// Where instances run and how many: the queues pumped into instances, placement on the
/// embedded worker and the fleet, boots, deployment bounds, eviction and idle instances.
extension Scheduler {
    // MARK: - Instances

    func pump(_ version: String) {
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
    func instanceCount(of account: String) -> Int {
        pools.values.reduce(0) { $0 + $1.filter { $0.account == account }.count } + (bootingFor[account] ?? 0)
    }

    /// The most instances one account may hold: the operator's limit, or all but one slot.
    var perAccountLimit: Int {
        settings.maxInstancesPerAccount ?? max(1, totalCapacity - 1)
    }

    // MARK: - Placement

    /// Instances the whole fleet (the embedded worker and every remote one) may run at once.
    var totalCapacity: Int {
        (settings.embeddedWorker ? settings.maxInstances : 0) + registry.fleet.workers.reduce(0) { $0 + $1.capacity }
    }

    /// The SKU a version runs on: its deployment's, else its model's.
    func hardware(of version: String) -> String {
        bounds[version]?.hardware ?? versions[version]?.hardware ?? "cpu"
    }

    /// Every place that could run instances, with what it offers and holds, and how it stands
    /// for `version` (warm: it runs an instance of it).
    func places(for version: String? = nil) -> [Place] {
        var result: [Place] = []
        if settings.embeddedWorker { result.append(place(.embedded, skus: embeddedSKUs, cached: [], capacity: settings.maxInstances, version: version)) }
        for member in registry.fleet.workers {
            result.append(place(.worker(member.id), skus: member.hardware.skus, cached: member.cached, capacity: member.capacity,
                                elsewhere: member.elsewhere, version: version))
        }
        return result
    }

    /// `elsewhere`: instances other replicas hold there (the worker's capacity is shared).
    func place(_ location: Location, skus: [String], cached: Set<String>, capacity: Int, elsewhere: Int = 0, version: String?) -> Place {
        let load = pools.values.reduce(0) { $0 + $1.filter { $0.location == location }.count } + (bootingAt[location] ?? 0) + elsewhere
        let warm = version.map { version in pools[version]?.contains { $0.location == location } ?? false } ?? false
        return Place(location: location, skus: skus, cached: cached, capacity: capacity, load: load, warm: warm)
    }

    /// What the embedded worker offers: `cpu` and one SKU per model of this machine's GPUs.
    var embeddedSKUs: [String] {
        HardwareInventory(cpus: 0, memoryBytes: 0, gpus: settings.embeddedGPUs, labels: []).skus
    }

    /// Whether anything in the fleet offers `sku` (full or not).
    func offered(_ sku: String) -> Bool {
        Placement.offered(sku, by: places())
    }

    /// Where a new instance of `version` goes (``Placement``); nil when every place offering
    /// `sku` is full.
    func place(_ version: String, sku: String) -> Location? {
        // A GPU instance goes on the embedded worker only while one of its GPUs of that model is free.
        let candidates = places(for: version).filter { place in
            place.location != .embedded || !sku.hasPrefix("gpu-") || freeGPUs.contains { $0.sku == sku }
        }
        return Placement.choose(version: version, sku: sku, among: candidates)
    }

    /// Gives `version`'s waiting predictions back to the shared queue (this replica runs no
    /// models and has no worker) and tells the other replicas.
    func handBack(_ version: String) async {
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
    func tellWaitingForHardware(_ version: String, sku: String) {
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
    func failUnplaceable() async {
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
    func expireWorkers() async {
        for name in await registry.fleet.sweep() {
            registry.logger.warning("worker lost", metadata: ["worker": "\(name)"])
        }
        await failUnplaceable()
    }

    /// A worker registered or its cache changed: place what waits.
    func fleetChanged() async {
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

    func boot(_ version: String, account: String, at location: Location) async {
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
                guard await registry.fleet.add(remote) else {
                    // Another replica filled it first (or it left): placed again with a fresh look.
                    lostWorker = "the worker chosen for it is full or left"
                    try? await registry.fleet.refresh()
                    // Placed again after a pause: with the database unreachable this would spin.
                    try? await Task.sleep(nanoseconds: 250_000_000)
                    throw RegistryError(503, "the worker chosen for it is full or left")
                }
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
    func showBuildLogs(_ version: String, _ text: String) async {
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
    func setupFailed(_ version: String, error: String, logs: String) {
        warmRetry[version] = Date().addingTimeInterval(30)
        registry.logger.error("model setup failed", metadata: ["version": "\(version)", "error": "\(error)",
                                                             "logs": "\(logs.suffix(2000))"])
    }

    /// Boots instances again for deployments below their minimum (after a crash or a failed setup).
    func keepDeploymentsWarm() {
        let now = Date()
        for version in bounds.keys where warmRetry[version].map({ $0 < now }) ?? true { pump(version) }
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
    func evictIdle(except version: String, for account: String, sku: String) -> Bool {
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
    func evictOwnIdle(except version: String, of account: String) -> Bool {
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
    func retire(_ instance: Instance) {
        instance.runner.terminate()
        freeGPUs += instance.gpus
        instance.gpus = []
    }

    func stopIdle() {
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
    func pumpWaiting() {
        let waiting = queues.compactMap { entry in entry.value.first.map { (version: entry.key, job: $0) } }
        let order = waiting.sorted { a, b in
            let (ca, cb) = (instanceCount(of: a.job.account), instanceCount(of: b.job.account))
            return ca != cb ? ca < cb : a.job.record.createdAt < b.job.record.createdAt
        }
        for entry in order { pump(entry.version) }
    }
}
