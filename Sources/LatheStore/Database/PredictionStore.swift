import Foundation
import LatheSpec
import SQLKit

extension SQLQueryString {
    /// A status as the SQL literal it is stored as (a literal, not a bind, so the planner sees
    /// it as it sees the queue index's values).
    mutating func appendInterpolation(_ status: PredictionStatus) {
        appendInterpolation(literal: status.rawValue)
    }

    /// Several statuses, comma-separated, for `IN (…)`.
    mutating func appendInterpolation(_ statuses: [PredictionStatus]) {
        for (index, status) in statuses.enumerated() {
            if index > 0 { appendLiteral(", ") }
            appendInterpolation(status)
        }
    }
}

/// A prediction as stored; JSON fields are kept as text.
public struct PredictionRecord: Sendable, Codable, Hashable {
    public var id: String
    public var modelID: String
    /// `owner/name`.
    public var model: String
    public var version: String
    public var creatorID: String
    public var source: String
    public var status: PredictionStatus
    public var input: String?
    public var output: String?
    public var error: String?
    public var logs: String
    public var metrics: String?
    public var createdAt: String
    public var startedAt: String?
    public var completedAt: String?
    public var dataRemoved: Bool
    public var shared: Bool
    public var webhook: String?
    /// Comma-separated subset of start, output, logs, completed.
    public var webhookEventsFilter: String?
    /// The account the prediction runs for: the creator, or an organization the creator acted as on the web.
    public var accountID: String?
    /// The request's `context` (string keys and values, as JSON text): what the model reads as
    /// `cog.current_scope().context`. Never shown in the API's answers.
    public var context: String? = nil
    /// Set on a training (JSON of ``TrainingOrder``): what it trains from and where its
    /// version goes. Nil on a prediction.
    public var training: String? = nil

    /// ``training`` decoded; nil for a prediction.
    public var trainingOrder: TrainingOrder? {
        training.flatMap { try? JSONDecoder().decode(TrainingOrder.self, from: Data($0.utf8)) }
    }

    /// ``context`` decoded (empty when there is none).
    public var requestContext: [String: String] {
        context.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
    }

    public var isTerminal: Bool { status.isTerminal }

    /// Seconds from creation to completion (Replicate's `metrics.total_time`).
    public var totalTime: Double? {
        guard let created = Timestamp.date(createdAt), let completed = completedAt.flatMap(Timestamp.date) else { return nil }
        return completed.timeIntervalSince(created)
    }

    /// The runner's `predict_time`, from the stored metrics.
    public var predictTime: Double? {
        metrics.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }?["predict_time"]?.doubleValue
    }

    package enum CodingKeys: String, CodingKey {
        case id, model, version, source, status, input, output, error, logs, metrics, shared
        case modelID = "model_id", creatorID = "creator_id", createdAt = "created_at", startedAt = "started_at"
        case completedAt = "completed_at", dataRemoved = "data_removed"
        case webhook, webhookEventsFilter = "webhook_events_filter"
        case accountID = "account_id"
        case context, training
    }

    /// Every stored property, as the memberwise initializer would take them.
    package init(id: String, modelID: String, model: String, version: String, creatorID: String, source: String,
                 status: PredictionStatus, input: String? = nil, output: String? = nil, error: String? = nil, logs: String,
                 metrics: String? = nil, createdAt: String, startedAt: String? = nil, completedAt: String? = nil,
                 dataRemoved: Bool, shared: Bool, webhook: String? = nil, webhookEventsFilter: String? = nil,
                 accountID: String? = nil, context: String? = nil) {
        self.id = id
        self.modelID = modelID
        self.model = model
        self.version = version
        self.creatorID = creatorID
        self.source = source
        self.status = status
        self.input = input
        self.output = output
        self.error = error
        self.logs = logs
        self.metrics = metrics
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.dataRemoved = dataRemoved
        self.shared = shared
        self.webhook = webhook
        self.webhookEventsFilter = webhookEventsFilter
        self.accountID = accountID
        self.context = context
    }
}

/// What a training is for (Replicate's `trainings.create`): the version it trains, and the
/// model whose new version it makes. Stored as JSON on the training's row.
public struct TrainingOrder: Sendable, Codable, Hashable {
    /// The version trained (the row's `version` is the config the training runs under).
    public var baseVersion: String
    public var destinationID: String
    /// `owner/name`.
    public var destination: String

    public init(baseVersion: String, destinationID: String, destination: String) {
        self.baseVersion = baseVersion
        self.destinationID = destinationID
        self.destination = destination
    }

    enum CodingKeys: String, CodingKey {
        case baseVersion = "base_version", destinationID = "destination_id", destination
    }
}

/// Predictions: created, advanced by the scheduler, read by their creator (or anyone, once shared).
public struct PredictionStore: Sendable {
    let sql: any SQLDatabase
    package let kind: RegistryDatabase.Kind

    let gate: SerialGate

    public init(database: RegistryDatabase) {
        sql = database.sql
        kind = database.kind
        gate = database.sqliteGate
    }

    package static let columns = "id, model_id, model, version, creator_id, source, status, input, output, error, logs, metrics, created_at, started_at, completed_at, data_removed, shared, webhook, webhook_events_filter, account_id, context, training"

    /// Inserts a new prediction, already claimed by `claim` (the replica that will run it) or
    /// waiting for any replica to claim it.
    public func insert(_ record: PredictionRecord, claim: (replica: String, id: String)? = nil, checkSafety: Bool = true) async throws {
        try await sql.raw("""
            INSERT INTO predictions (id, model_id, model, version, creator_id, source, status, input, logs, created_at, webhook, webhook_events_filter,
                                     account_id, claimed_by, claim_id, lease_until, attempts, check_safety, context, training)
            VALUES (\(bind: record.id), \(bind: record.modelID), \(bind: record.model), \(bind: record.version), \(bind: record.creatorID),
                    \(bind: record.source), \(bind: record.status.rawValue), \(bind: record.input), '', \(bind: record.createdAt),
                    \(bind: record.webhook), \(bind: record.webhookEventsFilter), \(bind: record.accountID ?? record.creatorID),
                    \(bind: claim?.replica), \(bind: claim?.id), \(bind: claim.map { _ in PredictionQueue.leaseEnd() }), \(bind: claim == nil ? 0 : 1),
                    \(bind: checkSafety), \(bind: record.context), \(bind: record.training))
            """).run()
    }

    /// Inserts a prediction that already finished (a quick `Prefer: wait` one): one statement
    /// instead of an insert and a completion.
    package func insertFinished(_ record: PredictionRecord, checkSafety: Bool) async throws {
        try await Self.indexOutputFiles(sql, prediction: record.id, output: record.output)
        try await sql.raw("""
            INSERT INTO predictions (id, model_id, model, version, creator_id, source, status, input, output, error, logs, metrics, created_at,
                                     started_at, completed_at, webhook, webhook_events_filter, account_id, attempts, check_safety, context, training)
            VALUES (\(bind: record.id), \(bind: record.modelID), \(bind: record.model), \(bind: record.version), \(bind: record.creatorID),
                    \(bind: record.source), \(bind: record.status.rawValue), \(bind: record.input), \(bind: record.output), \(bind: record.error),
                    \(bind: record.logs), \(bind: record.metrics), \(bind: record.createdAt), \(bind: record.startedAt), \(bind: record.completedAt),
                    \(bind: record.webhook), \(bind: record.webhookEventsFilter), \(bind: record.accountID ?? record.creatorID), 1, \(bind: checkSafety), \(bind: record.context),
                    \(bind: record.training))
            """).run()
    }

    /// `AND claim_id = …` when a claim is named: a write from a claim that was lost changes nothing.
    package func holding(_ claim: String?) -> SQLQueryString {
        claim.map { " AND claim_id = \(bind: $0)" } ?? ""
    }

    /// The prediction if `viewer` created it, belongs to the organization it ran for, or it is shared.
    public func prediction(_ id: String, viewer: Principal?) async throws -> PredictionRecord? {
        let user = viewer?.user.id ?? ""
        return try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM predictions WHERE id = \(bind: id)
              AND (shared OR creator_id = \(bind: user)
                   OR account_id IN (SELECT organization_id FROM memberships WHERE user_id = \(bind: user)))
            """).first(decoding: PredictionRecord.self)
    }

    /// What the web dashboard lists: the predictions run for `account` (the user's own, or an
    /// organization's the viewer belongs to), newest first, optionally by status and model.
    public func dashboard(account: String, status: PredictionStatus?, model: String?, after cursor: (String, String)?, limit: Int) async throws -> [PredictionRecord] {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.columns) FROM predictions WHERE COALESCE(account_id, creator_id) = \(bind: account) AND training IS NULL"
        if let status { query = query + " AND status = \(status)" }
        if let model, !model.isEmpty { query = query + " AND model = \(bind: model)" }
        if let (createdAt, id) = cursor {
            query = query + " AND (created_at < \(bind: createdAt) OR (created_at = \(bind: createdAt) AND id < \(bind: id)))"
        }
        query = query + " ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)"
        return try await sql.raw(query).all(decoding: PredictionRecord.self)
    }

    public func runCount(modelID: String) async throws -> Int {
        struct Row: Decodable { var runs: Int }
        return try await sql.raw("SELECT COUNT(*) AS runs FROM predictions WHERE model_id = \(bind: modelID)").first(decoding: Row.self)?.runs ?? 0
    }

    /// How many predictions each model has run (for explore cards).
    public func runCounts() async throws -> [String: Int] {
        struct Row: Decodable { var model_id: String; var runs: Int }
        let rows = try await sql.raw("SELECT model_id, COUNT(*) AS runs FROM predictions GROUP BY model_id").all(decoding: Row.self)
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.model_id, $0.runs) })
    }

    /// Internal read for the scheduler.
    package func prediction(_ id: String) async throws -> PredictionRecord? {
        try await sql.raw("SELECT \(unsafeRaw: Self.columns) FROM predictions WHERE id = \(bind: id)").first(decoding: PredictionRecord.self)
    }

    /// The viewer's predictions (or, with `trainings`, trainings), newest first, after a cursor,
    /// within optional dates.
    public func list(viewer: Principal, trainings: Bool = false, after cursor: (String, String)?, createdAfter: String?, createdBefore: String?,
                     limit: Int) async throws -> [PredictionRecord] {
        var query: SQLQueryString = "SELECT \(unsafeRaw: Self.columns) FROM predictions WHERE creator_id = \(bind: viewer.user.id)"
        query = query + (trainings ? " AND training IS NOT NULL" : " AND training IS NULL")
        if let createdAfter { query = query + " AND created_at > \(bind: createdAfter)" }
        if let createdBefore { query = query + " AND created_at < \(bind: createdBefore)" }
        if let (createdAt, id) = cursor {
            query = query + " AND (created_at < \(bind: createdAt) OR (created_at = \(bind: createdAt) AND id < \(bind: id)))"
        }
        query = query + " ORDER BY created_at DESC, id DESC LIMIT \(bind: limit)"
        return try await sql.raw(query).all(decoding: PredictionRecord.self)
    }

    package func markProcessing(_ id: String, at startedAt: String = Timestamp.now(), claim: String? = nil) async throws {
        try await sql.raw("""
            UPDATE predictions SET status = \(PredictionStatus.processing), started_at = \(bind: startedAt) WHERE id = \(bind: id) AND status = \(PredictionStatus.starting)\(holding(claim))
            """).run()
    }

    /// Logs of a prediction that is still waiting to start (its model's environment build).
    package func setStartingLogs(_ id: String, logs: String) async throws {
        try await sql.raw("UPDATE predictions SET logs = \(bind: logs) WHERE id = \(bind: id) AND status = \(PredictionStatus.starting)").run()
    }

    public func share(_ id: String) async throws {
        try await sql.raw("UPDATE predictions SET shared = TRUE WHERE id = \(bind: id)").run()
    }

    public func delete(_ id: String) async throws {
        try await sql.raw("DELETE FROM examples WHERE prediction_id = \(bind: id)").run()
        try await sql.raw("DELETE FROM prediction_events WHERE prediction_id = \(bind: id)").run()
        try await sql.raw("DELETE FROM predictions WHERE id = \(bind: id)").run()
        try await sql.raw("DELETE FROM output_files WHERE prediction_id = \(bind: id)").run()
    }

    /// API predictions finished before `cutoff` whose data is still there (shared ones and
    /// examples are kept, as on Replicate).
    package func expired(before cutoff: String) async throws -> [PredictionRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM predictions
            WHERE source = 'api' AND NOT data_removed AND NOT shared AND completed_at IS NOT NULL AND completed_at < \(bind: cutoff)
            """).all(decoding: PredictionRecord.self)
    }

    package func removeData(_ id: String) async throws {
        try await sql.raw("UPDATE predictions SET input = NULL, output = NULL, context = NULL, logs = '', data_removed = TRUE WHERE id = \(bind: id)").run()
        try await sql.raw("DELETE FROM prediction_events WHERE prediction_id = \(bind: id)").run()
        try await sql.raw("DELETE FROM output_files WHERE prediction_id = \(bind: id)").run()
    }

    /// The outputs that name files (the old full scan; now only the migration that builds the index reads them).
    static func outputsNamingFiles(_ sql: any SQLDatabase) async throws -> [(id: String, output: String)] {
        struct Row: Decodable { var id: String; var output: String }
        return try await sql.raw("SELECT id, output FROM predictions WHERE output LIKE '%/files/%'").all(decoding: Row.self).map { ($0.id, $0.output) }
    }

    /// The tokens of the output files (`/files/<token>/<name>`) an output names.
    static func outputTokens(_ output: String?) -> [String] {
        guard let output, output.contains("/files/"),
              let value = try? JSONDecoder().decode(JSONValue.self, from: Data(output.utf8)) else { return [] }
        // By path, whatever base URL they were made under (`lathe admin gc` has none).
        return BlobKey.outputs(in: value, baseURL: nil).compactMap { $0.path.split(separator: "/").dropFirst().first.map(String.init) }
    }

    /// Records which prediction names each output file, so garbage collection asks about the
    /// files it finds instead of reading every output (`output_files`, migration 14).
    static func indexOutputFiles(_ sql: any SQLDatabase, prediction id: String, output: String?) async throws {
        for token in outputTokens(output) {
            try await sql.raw("""
                INSERT INTO output_files (token, prediction_id) VALUES (\(bind: token), \(bind: id)) ON CONFLICT (token) DO NOTHING
                """).run()
        }
    }

    /// Which of `tokens` a prediction's output still names (index lookups, a few hundred at a time).
    package func referencedOutputTokens(_ tokens: [String]) async throws -> Set<String> {
        struct Row: Decodable { var token: String }
        var found = Set<String>()
        for start in stride(from: 0, to: tokens.count, by: 500) {
            let batch = Array(tokens[start..<min(start + 500, tokens.count)])
            for row in try await sql.raw("SELECT token FROM output_files WHERE token IN (\(binds: batch))").all(decoding: Row.self) {
                found.insert(row.token)
            }
        }
        return found
    }

    public func addExample(modelID: String, predictionID: String) async throws {
        try await sql.raw("""
            INSERT INTO examples (model_id, prediction_id, created_at) VALUES (\(bind: modelID), \(bind: predictionID), \(bind: Timestamp.now()))
            ON CONFLICT (model_id, prediction_id) DO NOTHING
            """).run()
        try await share(predictionID)
    }

    public func examples(modelID: String) async throws -> [PredictionRecord] {
        try await sql.raw("""
            SELECT \(unsafeRaw: Self.columns.split(separator: ",").map { "p." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))
            FROM predictions p JOIN examples e ON e.prediction_id = p.id WHERE e.model_id = \(bind: modelID) ORDER BY e.created_at
            """).all(decoding: PredictionRecord.self)
    }
}
