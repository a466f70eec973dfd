import Foundation
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat
import LatheStore

/// What can be done with predictions, whoever asks: submit one (checked, queued, its row
/// written while it runs), find it as a viewer may see it, stop it, delete it with its files,
/// and read a version's spec. The API's routes and the web pages both call this; neither holds
/// the operations themselves.
package struct PredictionService {
    package let registry: Registry
    package let scheduler: Scheduler

    package var store: PredictionStore { PredictionStore(database: registry.database) }

    /// Cancels a prediction that has not finished and waits (up to 10 s) for it to stop.
    package func stop(_ prediction: PredictionRecord) async throws {
        guard !prediction.isTerminal else { return }
        try await scheduler.cancel(prediction.id)
        await scheduler.wait(for: prediction.id, seconds: 10)
    }

    /// Deletes a prediction with its output files and the uploaded files its input names.
    package func remove(_ prediction: PredictionRecord) async throws {
        try await stop(prediction)
        let latest = try await current(prediction.id) ?? prediction
        func decode(_ text: String?) -> JSONValue? { text.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) } }
        await OutputFiles.delete(in: decode(latest.output), registry: registry)
        let uploads = "\(registry.baseURL)/v1/files/"
        for case .string(let url) in decode(latest.input)?.objectValue?.values.map({ $0 }) ?? [] where url.hasPrefix(uploads) {
            let id = String(url.dropFirst(uploads.count))
            guard Self.isID(id) else { continue }
            try await FileStore(database: registry.database).delete(id, owner: latest.creatorID)
            if let key = BlobKey.file(id) { try? await registry.blobs.delete(key) }
        }
        try await store.delete(prediction.id)
    }

    /// The prediction if `viewer` may see it (created it, acts for its account, or it is shared):
    /// the scheduler's copy while its completion is being written, else the database's row.
    package func find(_ id: String, viewer: Principal?) async throws -> PredictionRecord? {
        guard let pending = await scheduler.pending(id) else { return try await store.prediction(id, viewer: viewer) }
        let mayView = pending.shared || pending.creatorID == viewer?.user.id || pending.accountID.map { viewer?.actsFor($0) == true } == true
        return mayView ? pending : nil
    }

    /// The latest state whoever asks (internal: callers have checked access).
    package func current(_ id: String) async throws -> PredictionRecord? {
        if let pending = await scheduler.pending(id) { return pending }
        return try await store.prediction(id)
    }

    /// Checks `input` against the version's spec (throwing `InputErrors`, one per field) and
    /// queues the prediction. The API and the web form both create predictions here.
    /// With `deferInsert` (a `Prefer: wait` request: the client learns the id only from the
    /// answer), a prediction that finishes within 50 ms is written once, finished, by its
    /// ending, instead of inserted and then completed (``DeferredInsert``).
    package func submit(model: ModelRecord, version: VersionRecord, principal: Principal, input raw: [String: JSONValue], source: String,
                accountID: String? = nil, webhook: String? = nil, events: [String]? = nil, checkSafety: Bool = true,
                context: [String: String] = [:], deferInsert: Bool = false, training: TrainingOrder? = nil) async throws -> Submitted {
        let spec = try await spec(of: model, version: version)
        let input = try InputValidator.validate(raw, spec: spec)
        if let events, let bad = events.first(where: { !["start", "output", "logs", "completed"].contains($0) }) {
            throw CoreError(.invalid, "webhook_events_filter: \"\(bad)\" is not one of start, output, logs, completed")
        }
        if let webhook, let problem = Webhooks.problem(with: webhook, policy: registry.outbound.policy) {
            throw CoreError(.invalid, problem)
        }
        var record = PredictionRecord(
            id: Self.newID(), modelID: model.id, model: model.repository, version: version.id, creatorID: principal.user.id, source: source,
            status: .starting, input: String(decoding: JSONValue.object(raw).serialized(), as: UTF8.self), output: nil, error: nil, logs: "",
            metrics: nil, createdAt: Timestamp.now(), startedAt: nil, completedAt: nil, dataRemoved: false, shared: false,
            webhook: webhook, webhookEventsFilter: events?.joined(separator: ","))
        record.accountID = accountID ?? principal.user.id
        record.training = try training.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        if !context.isEmpty { record.context = String(decoding: JSONValue.object(context.mapValues { .string($0) }).serialized(), as: UTF8.self) }
        // The row is written while the model already runs; the answer and the completion both
        // wait for it (`Submitted.persisted`), so nobody ever sees a prediction without its row.
        let store = self.store, row = record
        let claim = await scheduler.newClaim(for: record.id)
        let insert: RowInsert = deferInsert
            ? .deferred(DeferredInsert(row: row, claim: claim, checkSafety: checkSafety, store: store))
            : .started(Task {
                try await store.insert(row, claim: claim, checkSafety: checkSafety)
                return false
            })
        try await scheduler.enqueue(record, manifestDigest: version.manifestDigest, model: model, input: input, checkSafety: checkSafety, inserted: insert,
                                    claimID: claim.id)
        return Submitted(record: record, insert: insert)
    }

    /// A queued prediction whose row is being written.
    package struct Submitted {
        package var record: PredictionRecord
        /// The row's insert; true when it wrote the finished prediction.
        package let insert: RowInsert

        /// The record once its row exists.
        package func persisted() async throws -> PredictionRecord {
            _ = try await insert.value
            return record
        }
    }

    package func spec(of model: ModelRecord, version: VersionRecord) async throws -> ModelSpec {
        if let cached = SpecCache.shared.get(version.manifestDigest) { return cached }
        let spec = try await loadSpec(version: version)
        SpecCache.shared.set(version.manifestDigest, spec)
        return spec
    }

    private func loadSpec(version: VersionRecord) async throws -> ModelSpec {
        try await registry.versionFiles(manifest: version.manifestDigest).config.spec
    }

    /// Whether `id` is one ``newID()`` makes: 26 lowercase base32 characters (never a path).
    package static func isID(_ id: String) -> Bool {
        id.count == 26 && id.allSatisfy { ("a"..."z").contains($0) || ("2"..."7").contains($0) }
    }

    /// Replicate-style ids: 26 lowercase base32 characters from the system's CSPRNG.
    package static func newID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        // 130 random bits, 5 per character (the alphabet has 32 letters, so each is uniform),
        // from three draws: one per character would be 26 system calls.
        var generator = SystemRandomNumberGenerator()
        let words: [UInt64] = [generator.next(), generator.next(), generator.next()]
        return String(decoding: (0..<26).map { index -> UInt8 in
            let bit = index * 5
            // 5 bits never straddle two words: 64 = 12 * 5 + 4, so start each word afresh.
            let word = words[bit / 60], shift = UInt64(bit % 60)
            return alphabet[Int((word >> shift) & 31)]
        }, as: UTF8.self)
    }

    /// Every stored property, as the memberwise initializer would take them.
    package init(registry: Registry, scheduler: Scheduler) {
        self.registry = registry
        self.scheduler = scheduler
    }
}
