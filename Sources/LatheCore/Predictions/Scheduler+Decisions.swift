import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// The decider's inputs and its plans applied (``Decider``), with what the fleet offers,
/// deployments' bounds and hardware nobody offers.
extension Scheduler {
    /// Places `version`'s waiting work (``Decider``).
    func pump(_ version: String) {
        apply(Decider.plan(fleetView(), versions: [version]))
    }

    /// Gives every version with queued predictions a chance at freed capacity, fairly
    /// (``Decider/fairOrder(_:)``), after `first` (whose instance just freed or booted) in the
    /// same plan.
    func pumpWaiting(after first: String? = nil) {
        let view = fleetView()
        let order = Decider.fairOrder(view).filter { $0 != first }
        apply(Decider.plan(view, versions: (first.map { [$0] } ?? []) + order))
    }

    /// What the decider is shown: this replica's queues, instances and boots, and every place
    /// of the fleet with what other replicas placed there.
    func fleetView() -> FleetView {
        var view = FleetView()
        for version in Set(queues.keys).union(pools.keys).union(bounds.keys).union(booting.keys) {
            let bound = bounds[version], waiting = queues[version] ?? []
            let concurrency = versions[version]?.config.spec.concurrency ?? 1
            // Only what the decider can use: as many as free slots and boots in flight take, and one more.
            let freeSlots = pools[version]?.reduce(0) { $0 + max(0, $1.slots - $1.running) } ?? 0
            let listed = waiting.prefix(freeSlots + (booting[version] ?? 0) * max(1, concurrency) + 1)
            view.versions[version] = FleetView.Version(
                queue: listed.map { FleetView.Waiting(id: $0.id, account: $0.account, createdAt: $0.record.createdAt, queuedAt: $0.queuedAt) },
                waitingBeyond: waiting.count - listed.count, sku: hardware(of: version), concurrency: concurrency,
                booting: booting[version] ?? 0, bounds: bound.map { FleetView.Bounds(min: $0.min, max: $0.max, account: $0.account) })
        }
        for (version, instances) in pools {
            for instance in instances {
                view.instances.append(FleetView.Instance(key: instance.key, version: version, account: instance.account, location: instance.location,
                                                         sku: instance.sku, running: instance.running, slots: instance.slots,
                                                         alive: instance.runner.isRunning, lastUsed: instance.lastUsed, gpus: instance.gpus))
            }
        }
        view.bootingFor = bootingFor
        view.bootingAt = bootingAt
        view.offers = offers()
        view.gpusBooting = bootingGPUs
        view.maxInstancesPerVersion = settings.maxInstancesPerVersion
        view.perAccountLimit = settings.maxInstancesPerAccount ?? max(1, view.offers.reduce(0) { $0 + $1.capacity } - 1)
        view.isLeader = events.isLeader
        view.sharedQueue = registry.database.kind == .postgres
        return view
    }

    /// Does what the decider planned.
    package func apply(_ actions: [SchedulerAction]) {
        for action in actions {
            switch action {
            case .start(let id, let version, let key):
                guard let index = queues[version]?.firstIndex(where: { $0.id == id }),
                      let instance = pools[version]?.first(where: { $0.key == key }) else { continue }
                let job = queues[version]!.remove(at: index)
                instance.running += 1
                running[job.id] = instance
                HotPath.task { await self.run(job, on: instance, version: version) }
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
                // The GPU is counted taken now, so a second plan cannot place on it too.
                let sku = hardware(of: version)
                let gpus = sku.hasPrefix("gpu-") ? [sku] : []
                bootingGPUs[location, default: []] += gpus
                Task { await boot(version, account: account, at: location, gpus: gpus) }
            case .handBack(let version):
                Task { await handBack(version) }
            case .waitForHardware(let version, let sku):
                tellWaitingForHardware(version, sku: sku)
            case .wantRoom(let sku):
                // At most once a second per SKU: the others answer by stopping one idle instance each.
                let now = Date()
                guard now.timeIntervalSince(roomWantedAt[sku] ?? .distantPast) >= 1 else { continue }
                roomWantedAt[sku] = now
                let events = self.events
                Task { await events.publish(.roomWanted(sku)) }
            }
        }
    }

    /// The SKU a version runs on: its deployment's, else its model's.
    package func hardware(of version: String) -> String {
        bounds[version]?.hardware ?? versions[version]?.hardware ?? "cpu"
    }

    /// Every worker of the fleet this replica may place on (each `lathe worker`, and its own
    /// embedded worker, listed first), with what other replicas placed there.
    package func offers() -> [FleetView.Offer] {
        let replica = registry.fleet.replica
        return registry.fleet.workers
            .filter { $0.home == nil || $0.home == replica }
            .sorted { ($0.home == nil ? 1 : 0, $0.id) < ($1.home == nil ? 1 : 0, $1.id) }
            .map { member in
                FleetView.Offer(location: .worker(member.id), skus: member.hardware.skus, cached: member.cached, capacity: member.capacity,
                                elsewhere: member.elsewhere, gpus: member.hardware.gpus.map(\.sku), shared: member.home == nil)
            }
    }

    /// Whether anything in the fleet offers `sku` (full or not).
    package func offered(_ sku: String) -> Bool {
        offers().contains { $0.skus.contains(sku) }
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
                await endUnrun(job, status: .failed,
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
    package func fleetChanged() async {
        await adopt()
        pumpWaiting()
        if events.isLeader { keepDeploymentsWarm() }
    }

    /// The SKUs the whole fleet offers (every replica's embedded worker too), for
    /// `GET /v1/hardware`, with a name for each.
    package func hardwareOffered() -> [(sku: String, name: String)] {
        var names: [String: String] = [:]
        for member in registry.fleet.workers {
            for sku in member.hardware.skus where names[sku] == nil {
                names[sku] = sku == "cpu" ? "CPU" : member.hardware.gpus.first(where: { $0.sku == sku }).map { "\($0.model) GPU" } ?? sku
            }
        }
        return names.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Boots instances again for deployments below their minimum (after a crash or a failed setup).
    func keepDeploymentsWarm() {
        let now = Date()
        for version in bounds.keys where warmRetry[version].map({ $0 < now }) ?? true { pump(version) }
    }

    /// Keeps `min` instances of a deployment's version warm and lets it scale to `max`.
    package func setBounds(version: String, manifestDigest: String, modelID: String, min: Int, max: Int, account: String, hardware: String) async throws {
        try await load(version, manifestDigest: manifestDigest, modelID: modelID)
        bounds[version] = (min, Swift.max(max, min, 1), account, hardware)
        pump(version)
    }

    /// The operator's limit on instances one account's deployments keep warm.
    package var warmLimit: Int { settings.maxWarmPerAccount }

    package func clearBounds(version: String) {
        bounds.removeValue(forKey: version)
    }

    /// Keeps every stored deployment's bounds again (after a restart).
    func restoreDeployments() async throws {
        for row in try await DeploymentStore(database: registry.database).all() {
            guard let model = try await registry.models.model(id: row.modelID), let version = try await registry.models.version(of: model, id: row.version)
            else { continue }
            try await setBounds(version: row.version, manifestDigest: version.manifestDigest, modelID: model.id, min: row.minInstances,
                                max: row.maxInstances, account: row.ownerID, hardware: row.hardware)
        }
    }
}
