import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// The completer: a prediction's one ending (DESIGN §5), and retention of finished predictions'
/// data.
extension Scheduler {
    /// How a prediction this replica holds ends, whatever ends it: what ``end(_:)`` writes.
    package struct Ending: Sendable {
        package var id: String
        package var claim: String
        package var status: PredictionStatus
        package var output: String? = nil
        package var error: String? = nil
        package var logs: String
        /// `predict_time` is running time only (no queueing, no boot); `{}` for one that never ran.
        package var metrics = "{}"
        package var startedAt: String? = nil
        package var completedAt: String? = nil
        /// The input with its secrets redacted, replacing the stored one.
        package var input: String? = nil
        /// The insert of its row, waited for first (true when it wrote the finished row itself).
        package var inserted: RowInsert? = nil
        /// Folders of the prediction's inputs and outputs on this machine.
        var cleanup: [URL] = []
        /// Whether it may have a webhook (false skips the lookup: most predictions have none).
        package var webhook = true
    }

    /// The one ending of a prediction (DESIGN §5), whatever ended it — succeeded, failed,
    /// canceled, timed out, lost, `Cancel-After`, or never run (canceled while queued, setup
    /// failed, no hardware). In this order: the final row under its claim (metrics included),
    /// the claim released, waiters here and on the other replicas woken, the `completed`
    /// webhook scheduled, the local files removed. Returns whether the row was written (false:
    /// the claim was lost, and what another replica wrote stands).
    @discardableResult
    package func end(_ ending: Ending) async -> Bool {
        let id = ending.id
        var written = false
        if case .deferred(let deferred)? = ending.inserted, deferred.takeForEnding() {
            // Nobody knows the id yet (the request waiting here will name it): one statement
            // writes the prediction as it ended.
            do {
                try await predictions.insertFinished(Self.row(deferred.row, as: ending), checkSafety: deferred.checkSafety)
                deferred.wrote(.success(()))
                written = true
            } catch {
                deferred.wrote(.failure(error))
                registry.logger.error("prediction row was not written", metadata: ["prediction": "\(id)", "error": "\(RegistryDatabase.reason(error))"])
            }
        } else if let inserted = ending.inserted {
            switch await inserted.result {
            case .success(let finished): written = finished
            case .failure: registry.logger.error("prediction row was not written", metadata: ["prediction": "\(id)"])
            }
        }
        // A row the insert wrote finished belongs to a prediction whose id nobody else knew yet:
        // only this replica's waiters need waking.
        var notified = written
        if !written {
            do {
                written = try await predictions.complete(id, status: ending.status, output: ending.output, error: ending.error, logs: ending.logs,
                                                         metrics: ending.metrics, startedAt: ending.startedAt, completedAt: ending.completedAt,
                                                         input: ending.input, claim: ending.claim)
                if !written {
                    // The lease ran out (this replica stalled) and the prediction was requeued or
                    // failed elsewhere: what was found here is not written over it.
                    registry.logger.warning("late completion refused: the claim was lost", metadata: ["prediction": "\(id)"])
                }
            } catch {
                // The database is unreachable: the claim's lease runs out and the leader requeues
                // the prediction or fails it with a sentence, as for a lost replica.
                registry.logger.error("could not write a prediction's ending", metadata: ["prediction": "\(id)", "error": "\(RegistryDatabase.reason(error))"])
            }
            // On PostgreSQL the completing statement itself tells every replica (NOTIFY).
            notified = written && registry.database.kind == .postgres
        }
        claims.removeValue(forKey: id)
        // What was found here and not written (the claim was lost) is nobody's answer.
        if !written { unpersisted.removeValue(forKey: id) }
        await announceEnded(id, notified: notified, webhook: written && ending.webhook)
        // Most predictions made no folder: a failing removal costs an error object.
        for folder in ending.cleanup where FileManager.default.fileExists(atPath: folder.path) { try? FileManager.default.removeItem(at: folder) }
        return written
    }

    /// The part of the ending after the row: waiters woken here and (unless the completing
    /// statement `notified` them) on the other replicas, then the `completed` webhook. The
    /// queue's sweeps, which end what a lost replica or a restart left (their rows written by
    /// one conditional statement each), end through here too.
    func announceEnded(_ id: String, notified: Bool, webhook: Bool) async {
        if notified { finished(id) } else { await publishFinished(id) }
        if webhook { await notify("completed", id) }
    }

    /// The ending of a prediction that never ran (canceled while queued, its model's setup
    /// failed, no hardware, unreadable).
    func endUnrun(_ id: String, claim: String, status: PredictionStatus, error: String? = nil, logs: String) async {
        await end(Ending(id: id, claim: claim, status: status, error: error, logs: logs))
    }

    /// The ending of a queued job that never ran.
    func endUnrun(_ job: Job, status: PredictionStatus, error: String? = nil, logs: String) async {
        await end(Ending(id: job.id, claim: job.claimID, status: status, error: error, logs: logs, inserted: job.inserted))
    }

    func failQueue(_ version: String, error: String, logs: String) async {
        let jobs = queues.removeValue(forKey: version) ?? []
        for job in jobs {
            await endUnrun(job, status: .failed, error: error, logs: job.preamble + logs)
        }
    }

    /// `row` (as queued) as `ending` ended it.
    static func row(_ row: PredictionRecord, as ending: Ending) -> PredictionRecord {
        var record = row
        record.status = ending.status
        record.output = ending.output
        record.error = ending.error
        record.logs = ending.logs
        record.metrics = ending.metrics
        record.startedAt = ending.startedAt
        record.completedAt = ending.completedAt ?? Timestamp.now()
        if let input = ending.input { record.input = input }
        return record
    }

    /// Sends a webhook event with the prediction as it now stands.
    func notify(_ event: String, _ id: String) async {
        guard let record = try? await predictions.prediction(id), record.webhook != nil else { return }
        await webhooks.deliver(event, record: record, body: PredictionShape(registry: registry).json(record))
    }

    /// API predictions lose input, output, logs and files after the retention time; the object stays.
    func removeExpiredData() async {
        let cutoff = Timestamp.string(Date().addingTimeInterval(-settings.dataRetention))
        for record in (try? await predictions.expired(before: cutoff)) ?? [] {
            await OutputFiles.delete(in: record.output.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }, registry: registry)
            try? await predictions.removeData(record.id)
        }
    }
}
