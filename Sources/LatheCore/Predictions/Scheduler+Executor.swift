import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// The executor: one prediction run on an instance, its progress streamed, its outcome handed to
/// the completer.
extension Scheduler {
    package func run(_ queued: Job, on instance: Instance, version: String) async {
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
        var processingTimer: Deadlines.Token?
        if job.hasWebhook {
            _ = try? await job.inserted?.value
            try? await store.markProcessing(id, at: startedAt, claim: claim)
            await notify("start", id)
        } else {
            // Off the answer's path, once the row exists. Readers see "processing" only when the
            // row says so: a restart fails what was processing and runs what was starting, so a
            // client must never see processing before it is written.
            // A prediction that is done within 50 ms is written once, by its completion; its
            // deadline is cancelled then, which (unlike a sleeping task) wakes no thread.
            let inserted = job.inserted
            processingTimer = Deadlines.shared.after(0.05) { [weak self] in
                Task {
                    _ = try? await inserted?.value
                    guard await self?.isRunning(id) == true else { return }
                    try? await store.markProcessing(id, at: startedAt, claim: claim)
                }
            }
        }
        let outputs = instance.work.appendingPathComponent("outputs/\(job.id)", isDirectory: true)
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
            let spec = versions[version]!.config.spec, directory = instance.work.appendingPathComponent("inputs/\(job.id)", isDirectory: true)
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
        processingTimer.map(Deadlines.shared.cancel)
        if instance.runner.takeRetry(id) {
            // Its worker was lost before the prediction produced anything: run it again
            // elsewhere, twice at most; after that it fails with the worker's name.
            if job.attempts < 2 {
                running.removeValue(forKey: id)
                instance.running -= 1
                pools[version]?.removeAll { $0 === instance }
                try? FileManager.default.removeItem(at: instance.work.appendingPathComponent("inputs/\(job.id)", isDirectory: true))
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
                pumpWaiting(after: version)
                return
            }
            outcome.error = (outcome.error ?? "its worker was lost") + " (it was tried 3 times)"
        }
        // A succeeded training makes its destination's version from the files it returned
        // (before they are published as its `weights` output, which moves them).
        var trained: String?
        if outcome.status == .succeeded, let order = job.record.trainingOrder {
            do {
                trained = try await Trainings(registry: registry).publish(order, modelID: job.record.modelID, output: outcome.output, from: outputs)
            } catch {
                // The caller gets the core's own sentences; a storage error's details (paths,
                // the database's words) go to the server's log only.
                registry.logger.error("a training's version could not be made", metadata: ["training": "\(id)", "error": "\(error)"])
                outcome.status = .failed
                outcome.error = "the training finished, but its version could not be made: "
                    + ((error as? CoreError)?.message ?? (error as? ArchiveError)?.message ?? "the server could not store it (its log says why)")
            }
        }
        // What it streamed before it was canceled, timed out or failed stays its output.
        var output = try? await OutputFiles.publish(outcome.output ?? progress.emitted, from: outputs, registry: registry)
        if let trained {
            // Replicate's training output: the version made, and where the weights are.
            let weights = output?.objectValue?["weights"] ?? output ?? .null
            output = .object(["version": .string(trained), "weights": weights])
        }
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
        // Readers look here first while the ending is written; waiters are handed it once it is.
        unpersisted[id] = record
        pumpWaiting(after: version)
        await end(Ending(id: id, claim: claim, status: record.status, output: record.output, error: record.error, logs: record.logs,
                         metrics: record.metrics ?? "{}", startedAt: startedAt, completedAt: record.completedAt, input: redacted,
                         inserted: job.inserted, cleanup: [instance.work.appendingPathComponent("inputs/\(job.id)", isDirectory: true), outputs],
                         webhook: job.hasWebhook))
        unpersisted.removeValue(forKey: id)
    }

    /// The stored input with every `secret` input's value replaced by asterisks, as Replicate
    /// shows them; nil when the spec has no secret inputs.
    static func redactingSecrets(_ input: String?, spec: ModelSpec?) -> String? {
        let secrets = Set(spec?.inputs.filter { $0.type == .secret }.map(\.name) ?? [])
        guard !secrets.isEmpty, let input, var values = try? JSONDecoder().decode([String: JSONValue].self, from: Data(input.utf8)) else { return nil }
        for name in secrets where values[name] != nil && values[name] != .null { values[name] = .string("**********") }
        return String(decoding: JSONValue.object(values).serialized(), as: UTF8.self)
    }
}
