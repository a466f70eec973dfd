import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Logging
import LatheStore

/// Taking predictions in: queued here (or found in the shared queue), loaded, cancelled wherever
/// they are.
extension Scheduler {
    /// Queues an inserted prediction; `input` is the validated input it runs with.
    /// `model`, when the caller has it, refreshes the hardware the version asks for.
    package func enqueue(_ record: PredictionRecord, manifestDigest: String?, model: ModelRecord? = nil, input: [String: JSONValue], checkSafety: Bool = true,
                 inserted: RowInsert? = nil, claimID: String) async throws {
        let version = record.version
        try await load(version, manifestDigest: manifestDigest, modelID: record.modelID)
        if let model, versions[version]?.hardware != model.hardware { versions[version]?.hardware = model.hardware }
        let timeout = min(TimeInterval(versions[version]?.config.spec.timeout ?? 1800), settings.maxTimeout)
        queues[version, default: []].append(Job(id: record.id, creatorID: record.creatorID, record: record, inserted: inserted, input: input, timeout: timeout,
                                                checkSafety: checkSafety, hasWebhook: record.webhook != nil, claimID: claimID))
        pump(version)
    }

    /// Reads a version's manifest and config once.
    package func load(_ version: String, manifestDigest: String?, modelID: String) async throws {
        if versions[version] == nil {
            guard let model = try await registry.models.model(id: modelID) else { throw CoreError(.notFound, "the model of version \(version) is gone") }
            let digest: String
            if let manifestDigest {
                digest = manifestDigest
            } else {
                guard let found = try await registry.models.manifestDigest(modelID: modelID, version: version) else {
                    throw CoreError(.notFound, "version \(version) is gone")
                }
                digest = found
            }
            let (manifest, config) = try await registry.versionFiles(manifest: digest)
            versions[version] = LoadedVersion(manifest: manifest, config: config, manifestDigest: digest, modelID: modelID,
                                              repository: model.repository, hardware: model.hardware)
        }
    }

    /// A finished prediction whose completion is still being written.
    package func pending(_ id: String) -> PredictionRecord? {
        unpersisted[id]
    }

    /// Cancels a queued or running prediction, wherever it is: here, unclaimed in the queue, or
    /// on another replica (which hears the event, or sees the flag at its next heartbeat).
    package func cancel(_ id: String) async throws {
        for (version, waiting) in queues {
            if let job = waiting.first(where: { $0.id == id }) {
                queues[version] = waiting.filter { $0.id != id }
                await endUnrun(job, status: .canceled, logs: job.preamble)
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
}
