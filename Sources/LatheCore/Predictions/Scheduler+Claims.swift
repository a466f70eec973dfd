import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// The claim keeper: this replica's claims on the shared queue, renewed, adopted and handed back;
/// leases of lost replicas expired by the leader.
extension Scheduler {
    /// A claim for a prediction this replica is creating (it runs what it takes in, unless it
    /// dies: then the lease runs out and another replica claims it).
    func newClaim(for id: String) -> (replica: String, id: String) {
        let claim = "\(replica):\(id):1"
        claims[id] = claim
        return (replica, claim)
    }

    /// Claims unclaimed waiting predictions while this replica has room for them.
    func adopt() async {
        // An API-only replica with no worker of its own leaves the queue to those that have one.
        guard !offers().isEmpty else { return }
        let queued = queues.values.reduce(0) { $0 + $1.count }
        let room = 2 * settings.maxInstances - queued
        guard room > 0, let claimed = try? await queue.claim(replica: replica, limit: room) else { return }
        for item in claimed {
            claims[item.record.id] = item.claimID
            do {
                guard let input = item.record.input.flatMap({ try? JSONDecoder().decode([String: JSONValue].self, from: Data($0.utf8)) }) else {
                    throw CoreError(.failed, "the prediction's input could not be read")
                }
                try await enqueue(item.record, manifestDigest: nil, input: input, checkSafety: item.checkSafety, claimID: item.claimID)
            } catch {
                await endUnrun(item.record.id, claim: item.claimID, status: .failed, error: "\(error)", logs: item.record.logs)
            }
        }
    }

    /// Renews this replica's leases, and stops what someone asked to cancel elsewhere.
    package func heartbeat() async {
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
    package func expireLeases() async {
        guard let (requeued, failed) = try? await queue.expireLeases() else { return }
        // The replica that ran them is gone, so the leader announces their ending and sends their last webhook.
        for id in failed { await announceEnded(id, notified: false, webhook: true) }
        if !requeued.isEmpty {
            registry.logger.warning("requeued predictions of a lost replica", metadata: ["count": "\(requeued.count)"])
            await events.publish(.queued)
        }
    }

    /// Gives `version`'s waiting predictions back to the shared queue (this replica runs no
    /// models and has no worker) and tells the other replicas.
    package func handBack(_ version: String) async {
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

    /// Clears cached tokens and models when another process (`lathe admin`) changed accounts:
    /// it bumps a counter in the database, read here once a second. The first read clears them
    /// too: what was cached before it may predate a change made since the server started (a
    /// token disabled in the server's first second stayed usable for the cache's 10 s).
    func followAccountChanges() async {
        guard let counter = try? await registry.accounts.changeCounter() else { return }
        if accountsCounter != counter { registry.database.caches.clear() }
        accountsCounter = counter
    }
}
