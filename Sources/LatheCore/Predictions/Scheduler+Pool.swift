import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging

/// The instance pool: instances booted through their host, stopped when idle or crashed, and their
/// unpacked versions removed when unused.
extension Scheduler {
    /// Boots an instance; `gpus` are the GPUs (by SKU) counted taken for it at its place: held by
    /// the instance once it is ready, free again otherwise.
    package func boot(_ version: String, account: String, at location: Location, gpus: [String]) async {
        defer {
            for sku in gpus { if let index = bootingGPUs[location]?.firstIndex(of: sku) { bootingGPUs[location]?.remove(at: index) } }
            if bootingGPUs[location]?.isEmpty == true { bootingGPUs.removeValue(forKey: location) }
            booting[version, default: 1] -= 1
            bootingFor[account, default: 1] -= 1
            bootingAt[location, default: 1] -= 1
            if bootingFor[account] == 0 { bootingFor.removeValue(forKey: account) }
            if bootingAt[location] == 0 { bootingAt.removeValue(forKey: location) }
        }
        guard let loaded = versions[version] else { return }
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
        let request = BootRequest(version: version, loaded: loaded, work: work, sku: sku, gpus: gpus.count)
        do {
            let booted = try await FleetWorkerHost(workerID: location.workerID, fleet: registry.fleet).boot(request, log: buildLog)
            if let text = buildLog.takeIfChanged() { await showBuildLogs(version, text) }
            switch booted.setup {
            case .ready(_, let setupLogs):
                nextInstanceKey += 1
                let instance = Instance(key: nextInstanceKey, runner: booted.runner, work: work, account: account, location: location, sku: sku,
                                        slots: loaded.config.spec.concurrency)
                instance.setupLogs = setupLogs
                instance.gpus = gpus
                pools[version, default: []].append(instance)
                registry.logger.info("instance ready", metadata: ["version": "\(version)", "seconds": "\(Date().timeIntervalSince(started))",
                                                                  "where": "\(location)"])
            case .failed(let error, let logs):
                booted.runner.terminate()
                if let lost = booted.lost {
                    // Not the model's fault: it is placed again, with a fresh look at the fleet
                    // after a pause (a worker whose GPUs another replica took would otherwise be
                    // asked again at once, and refuse again).
                    registry.logger.warning("boot lost or refused by its worker", metadata: ["version": "\(version)", "reason": "\(lost)"])
                    try? await registry.fleet.refresh()
                    try? await Task.sleep(nanoseconds: 250_000_000)
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
        pumpWaiting(after: version)
    }

    /// Shows an environment build's output as the logs of the predictions waiting for it.
    func showBuildLogs(_ version: String, _ text: String) async {
        for job in queues[version] ?? [] {
            _ = try? await job.inserted?.value
            try? await predictions.setStartingLogs(job.id, logs: text)
        }
    }

    /// Tells the operator, and holds off warm boots for a while so a broken model does not loop.
    func setupFailed(_ version: String, error: String, logs: String) {
        warmRetry[version] = Date().addingTimeInterval(30)
        registry.logger.error("model setup failed", metadata: ["version": "\(version)", "error": "\(error)",
                                                             "logs": "\(logs.suffix(2000))"])
    }

    /// Stops an instance leaving its pool (its GPUs count free once it is out of the pool).
    package func retire(_ instance: Instance) {
        instance.runner.terminate()
    }

    /// Stops crashed instances, and idle ones past the idle timeout beyond deployments' minimums.
    func stopIdle() {
        apply(Decider.scaleDown(fleetView(), now: Date(), idleTimeout: settings.idleTimeout))
        pumpWaiting()
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
}
