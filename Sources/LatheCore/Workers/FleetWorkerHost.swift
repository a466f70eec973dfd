import Foundation
import LatheArchive
import LatheRunner

/// What a host needs to boot an instance.
package struct BootRequest: Sendable {
    package var version: String
    package var loaded: Scheduler.LoadedVersion
    /// The instance's own folder on this machine (inputs and outputs of its predictions).
    package var work: URL
    package var sku: String
    /// Whole GPUs of the model `sku` names it gets (the worker picks which).
    package var gpus: Int
}

/// A booted instance: its runner and how setup went.
package struct BootedInstance: Sendable {
    package var runner: any InstanceRunner
    package var setup: SetupResult
    /// Set when setup did not finish because the host was lost or refused the boot (no free GPU
    /// of its model), not because the model failed.
    package var lost: String?
}

/// The host went away or filled up before the instance booted: not the model's fault.
package struct HostLost: Error, CustomStringConvertible {
    package var description: String
}

/// Where an instance boots (DESIGN §6): a worker of the fleet, `lathe worker` or the embedded
/// one alike. The slot is reserved in the shared store (under the worker's row lock), then the
/// worker is told to boot. Throws ``HostLost`` when the worker went away or filled up (the boot
/// is placed again elsewhere); any other failure is the model's setup failing.
package struct FleetWorkerHost {
    package var workerID: String
    package var fleet: WorkerFleet

    package func boot(_ request: BootRequest, log: BuildLog) async throws -> BootedInstance {
        guard let member = fleet.workers.first(where: { $0.id == workerID }) else { throw HostLost(description: "the worker chosen for it left") }
        let remote = RemoteInstance(id: "i-" + UUID().uuidString.lowercased().prefix(12), workerID: workerID, workerName: member.name,
                                    tokenID: member.tokenID, modelID: request.loaded.modelID, work: request.work,
                                    channel: FleetChannel(workerID: workerID, fleet: fleet))
        guard await fleet.add(remote) else {
            // Another replica filled it first (or it left): placed again with a fresh look, after
            // a pause (with the database unreachable this would spin).
            try? await fleet.refresh()
            try? await Task.sleep(nanoseconds: 250_000_000)
            throw HostLost(description: "the worker chosen for it is full or left")
        }
        let version = WorkerVersion(id: request.version, repository: request.loaded.repository, manifestDigest: request.loaded.manifestDigest)
        let setup = await remote.boot(version, gpus: request.gpus, sku: request.sku) { log.replace($0) }
        return BootedInstance(runner: remote, setup: setup, lost: remote.notTheModel)
    }
}

/// Commands to one worker of the fleet go through its long polls (held here or by another
/// replica); a stopped instance frees its slot in the shared store.
package struct FleetChannel: WorkerChannel {
    package let workerID: String
    package unowned let fleet: WorkerFleet

    package func send(_ command: WorkerCommand) { fleet.send(workerID, command) }
    package func forget(_ instance: RemoteInstance) { fleet.remove(instance) }
}
