import Foundation
import ServiceLifecycle
import LatheArchive
import LatheRunner
import LatheSpec
import Logging

/// Running a prediction on an instance and its one ending (DESIGN §5).
extension Scheduler {
    func failQueue(_ version: String, error: String, logs: String) async {
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
    func end(_ ending: Ending) async -> Bool {
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
    func endUnrun(_ id: String, claim: String, inserted: Task<Bool, any Error>? = nil, status: PredictionStatus, error: String? = nil,
                          logs: String) async {
        await end(Ending(id: id, claim: claim, status: status, error: error, logs: logs, inserted: inserted))
    }

    /// Sends a webhook event with the prediction as it now stands.
    func notify(_ event: String, _ id: String) async {
        guard let record = try? await predictions.prediction(id), record.webhook != nil else { return }
        await webhooks.deliver(event, record: record, body: PredictionShape(registry: registry).json(record))
    }

    func run(_ queued: Job, on instance: Instance, version: String) async {
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
            let result: Result<[String: JSONValue], any Error>
            if InputFiles.anyToLocalize(raw, spec: spec) {
                let localizing = Task {
                    try await RegistryInputs.localize(raw, spec: spec, directory: directory, owner: creator, registry: registry, timeout: timeout)
                }
                downloads[id] = localizing
                result = await localizing.result
                downloads.removeValue(forKey: id)
            } else {
                // Most inputs name no file: no task to start, nothing to download or cancel.
                result = .success(raw)
            }
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
    func removeExpiredData() async {
        let cutoff = Timestamp.string(Date().addingTimeInterval(-settings.dataRetention))
        for record in (try? await predictions.expired(before: cutoff)) ?? [] {
            await OutputFiles.delete(in: record.output.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }, registry: registry)
            try? await predictions.removeData(record.id)
        }
    }
}
