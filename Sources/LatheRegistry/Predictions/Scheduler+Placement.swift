import Foundation
import ServiceLifecycle
import LatheArchive
import LatheRunner
import LatheSpec
import Logging

/// Where instances run and how many: the queues pumped into instances, placement on the
/// embedded worker and the fleet, boots, deployment bounds, eviction and idle instances.
extension Scheduler {
    // MARK: - Deciding

    /// Places `version`'s waiting work (``Decider``).
    func pump(_ version: String) {
        apply(Decider.plan(fleetView(), versions: [version]))
    }

    /// Gives every version with queued predictions a chance at freed capacity, fairly
    /// (``Decider/fairOrder(_:)``).
    func pumpWaiting() {
        let view = fleetView()
        apply(Decider.plan(view, versions: Decider.fairOrder(view)))
    }

    /// What the decider is shown: this replica's queues, instances and boots, and every place
    /// of the fleet with what other replicas placed there.
    func fleetView() -> FleetView {
        var view = FleetView()
        for version in Set(queues.keys).union(pools.keys).union(bounds.keys).union(booting.keys) {
            let bound = bounds[version]
            view.versions[version] = FleetView.Version(
                queue: (queues[version] ?? []).map { FleetView.Waiting(id: $0.id, account: $0.account, createdAt: $0.record.createdAt) },
                sku: hardware(of: version), concurrency: versions[version]?.config.spec.concurrency ?? 1, booting: booting[version] ?? 0,
                bounds: bound.map { FleetView.Bounds(min: $0.min, max: $0.max, account: $0.account) })
        }
        for (version, instances) in pools {
            for instance in instances {
                view.instances.append(FleetView.Instance(key: instance.key, version: version, account: instance.account, location: instance.location,
                                                         sku: instance.sku, running: instance.running, slots: instance.slots,
                                                         alive: instance.runner.isRunning, lastUsed: instance.lastUsed, gpus: instance.gpus.map(\.sku)))
            }
        }
        view.bootingFor = bootingFor
        view.bootingAt = bootingAt
        view.offers = offers()
        view.freeGPUs = freeGPUs.map(\.sku)
        view.maxInstancesPerVersion = settings.maxInstancesPerVersion
        view.perAccountLimit = settings.maxInstancesPerAccount ?? max(1, view.offers.reduce(0) { $0 + $1.capacity } - 1)
        view.isLeader = events.isLeader
        view.sharedQueue = registry.database.kind == .postgres
        return view
    }

    /// Does what the decider planned.
    func apply(_ actions: [SchedulerAction]) {
        for action in actions {
            switch action {
            case .start(let id, let version, let key):
                guard let index = queues[version]?.firstIndex(where: { $0.id == id }),
                      let instance = pools[version]?.first(where: { $0.key == key }) else { continue }
                let job = queues[version]!.remove(at: index)
                instance.running += 1
                running[job.id] = instance
                Task { await run(job, on: instance, version: version) }
            case .retire(let key):
                guard let (version, instance) = pools.lazy.compactMap({ entry in entry.value.first { $0.key == key }.map { (entry.key, $0) } }).first
                else { continue }
                retire(instance)
                try? FileManager.default.removeItem(at: instance.work)
                pools[version]?.removeAll { $0 === instance }
                if pools[version]?.isEmpty == true { pools.removeValue(forKey: version) }
            case .boot(let version, let account, let location):
                booting[version, default: 0] += 1
                bootingFor[account, default: 0] += 1
                bootingAt[location, default: 0] += 1
                // The GPU is taken now, so a second plan cannot place on it too.
                let sku = hardware(of: version)
                let index = location == .embedded && sku.hasPrefix("gpu-") ? freeGPUs.firstIndex { $0.sku == sku } : nil
                let gpus = index.map { [freeGPUs.remove(at: $0)] } ?? []
                Task { await boot(version, account: account, at: location, gpus: gpus) }
            case .handBack(let version):
                Task { await handBack(version) }
            case .waitForHardware(let version, let sku):
                tellWaitingForHardware(version, sku: sku)
            }
        }
    }

    // MARK: - Placement

    /// The SKU a version runs on: its deployment's, else its model's.
    func hardware(of version: String) -> String {
        bounds[version]?.hardware ?? versions[version]?.hardware ?? "cpu"
    }

    /// Every place that could run instances: the embedded worker and each worker of the fleet,
    /// with what other replicas placed there.
    func offers() -> [FleetView.Offer] {
        var result: [FleetView.Offer] = []
        if settings.embeddedWorker { result.append(FleetView.Offer(location: .embedded, skus: embeddedSKUs, capacity: settings.maxInstances)) }
        for member in registry.fleet.workers {
            result.append(FleetView.Offer(location: .worker(member.id), skus: member.hardware.skus, cached: member.cached, capacity: member.capacity,
                                          elsewhere: member.elsewhere))
        }
        return result
    }

    /// What the embedded worker offers: `cpu` and one SKU per model of this machine's GPUs.
    var embeddedSKUs: [String] {
        HardwareInventory(cpus: 0, memoryBytes: 0, gpus: settings.embeddedGPUs, labels: []).skus
    }

    /// Whether anything in the fleet offers `sku` (full or not).
    func offered(_ sku: String) -> Bool {
        offers().contains { $0.skus.contains(sku) }
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

    /// The host at `location`: the only place that tells the embedded worker from the fleet's.
    func host(at location: Location) -> any InstanceHost {
        switch location {
        case .embedded: EmbeddedWorker(runtime: runtime, sandbox: settings.sandbox, build: settings.build, blobCache: registry.blobCache)
        case .worker(let id): FleetWorkerHost(workerID: id, fleet: registry.fleet)
        }
    }

    /// Boots an instance; `gpus` are the embedded worker's GPUs taken for it (given back unless it becomes ready).
    func boot(_ version: String, account: String, at location: Location, gpus: [GPU]) async {
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
        var heldGPUs = gpus
        defer { freeGPUs += heldGPUs }
        let request = BootRequest(version: version, digest: digest, loaded: loaded, work: work, sku: sku, gpus: gpus)
        do {
            let booted = try await host(at: location).boot(request, log: buildLog)
            if let text = buildLog.takeIfChanged() { await showBuildLogs(version, text) }
            switch booted.setup {
            case .ready(_, let setupLogs):
                nextInstanceKey += 1
                let instance = Instance(key: nextInstanceKey, runner: booted.runner, work: work, account: account, location: location, sku: sku,
                                        slots: loaded.config.spec.concurrency)
                instance.setupLogs = setupLogs
                instance.gpus = heldGPUs
                heldGPUs = []
                pools[version, default: []].append(instance)
                registry.logger.info("instance ready", metadata: ["version": "\(version)", "seconds": "\(Date().timeIntervalSince(started))",
                                                                  "where": "\(location)"])
            case .failed(let error, let logs):
                booted.runner.terminate()
                if let lost = booted.lost {
                    // Not the model's fault: it is placed again elsewhere.
                    registry.logger.warning("boot lost with its worker", metadata: ["version": "\(version)", "reason": "\(lost)"])
                } else {
                    setupFailed(version, error: "\(error)", logs: logs)
                    await failQueue(version, error: "Model setup failed: \(error)", logs: logs)
                }
            }
        } catch let lost as HostLost {
            registry.logger.warning("boot lost with its worker", metadata: ["version": "\(version)", "reason": "\(lost)"])
        } catch {
            setupFailed(version, error: "\(error)", logs: buildLog.text)
            await failQueue(version, error: "Model setup failed: \(error)", logs: buildLog.text)
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

    /// Stops an instance leaving its pool and gives back the embedded worker's GPUs it held.
    func retire(_ instance: Instance) {
        instance.runner.terminate()
        freeGPUs += instance.gpus
        instance.gpus = []
    }

    /// Stops crashed instances, and idle ones past the idle timeout beyond deployments' minimums.
    func stopIdle() {
        apply(Decider.scaleDown(fleetView(), now: Date(), idleTimeout: settings.idleTimeout))
        pumpWaiting()
    }
}
