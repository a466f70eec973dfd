import Foundation
import LatheSpec
import SQLKit

/// One entry of the append-only `prediction_events` log: what a running prediction added since
/// the entry before (new output items and log text), or that it finished. A stream starts from
/// the row and its newest `seq` (read together, so nothing is missed or sent twice) and then
/// follows the entries after it, woken by `NOTIFY` (or in memory on one machine).
public struct PredictionChange: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable { case progress, done }
    public var seq: Int64
    public var kind: Kind
    /// Output items added, in order.
    public var items: [JSONValue]
    /// Log text added.
    public var logs: String
}

/// What a running prediction produced since its last progress write.
package struct ProgressDelta: Sendable, Codable, Equatable {
    package var output: [JSONValue]
    package var logs: String

    /// Every stored property, as the memberwise initializer would take them.
    package init(output: [JSONValue], logs: String) {
        self.output = output
        self.logs = logs
    }
}

extension PredictionStore {
    /// Streamed output and logs so far, with what is new since the last write appended to the
    /// event log in the same statement (PostgreSQL, which also tells every replica) or
    /// transaction (SQLite). The first such write also marks the prediction processing.
    package func updateProgress(_ id: String, output: String?, logs: String, delta: ProgressDelta, startedAt: String, claim: String? = nil) async throws {
        let data = String(decoding: try JSONEncoder().encode(delta), as: UTF8.self)
        let now = Timestamp.now()
        let update: SQLQueryString = """
            UPDATE predictions SET output = \(bind: output), logs = \(bind: logs), status = \(PredictionStatus.processing),
              started_at = COALESCE(started_at, \(bind: startedAt))
            WHERE id = \(bind: id) AND status IN (\([PredictionStatus.starting, .processing]))\(holding(claim))
            RETURNING id
            """
        try await appendingEvent(update, kind: .progress, data: data, at: now)
    }

    /// Records the outcome; `startedAt` fills `started_at` when the processing update has not landed yet.
    /// `input`, when given, replaces the stored input (with its secrets redacted).
    /// Returns false when nothing was written: the prediction had finished, or `claim` was lost.
    /// On PostgreSQL the same statement appends the `done` event and tells every replica
    /// (`NOTIFY`), so a finished prediction costs one round trip.
    @discardableResult
    package func complete(_ id: String, status: PredictionStatus, output: String?, error: String?, logs: String, metrics: String,
                  startedAt: String? = nil, completedAt: String? = nil, input: String? = nil, claim: String? = nil) async throws -> Bool {
        // Indexed first: a file is never named by a row that garbage collection cannot see.
        try await Self.indexOutputFiles(sql, prediction: id, output: output)
        let update: SQLQueryString = """
            UPDATE predictions SET status = \(status), output = \(bind: output), error = \(bind: error), logs = \(bind: logs),
              metrics = \(bind: metrics), started_at = COALESCE(started_at, \(bind: startedAt)), completed_at = \(bind: completedAt ?? Timestamp.now()),
              input = COALESCE(\(bind: input), input), claimed_by = NULL, lease_until = NULL
            WHERE id = \(bind: id) AND status IN (\([PredictionStatus.starting, .processing]))\(holding(claim))
            RETURNING id
            """
        guard try await appendingEvent(update, kind: .done, data: status.rawValue, at: Timestamp.now()) else {
            // Nothing was written: these files are named by no row.
            let tokens = Self.outputTokens(output)
            if !tokens.isEmpty {
                try await sql.raw("DELETE FROM output_files WHERE prediction_id = \(bind: id) AND token IN (\(binds: tokens))").run()
            }
            return false
        }
        return true
    }

    /// Runs `update` (which returns the id it changed) and, when it changed the row, appends an
    /// event for it. Returns whether the row changed.
    @discardableResult
    private func appendingEvent(_ update: SQLQueryString, kind eventKind: PredictionChange.Kind, data: String, at now: String) async throws -> Bool {
        struct Row: Decodable { var id: String }
        switch kind {
        case .postgres:
            let notice = eventKind == .done ? "finished:" : "progress:"
            return try await !sql.raw("""
                WITH changed AS (\(update)),
                  logged AS (INSERT INTO prediction_events (prediction_id, kind, data, created_at)
                             SELECT id, \(bind: eventKind.rawValue), \(bind: data), \(bind: now) FROM changed RETURNING prediction_id)
                SELECT prediction_id AS id, pg_notify(\(bind: PostgresEvents.channel), \(bind: notice) || prediction_id) FROM logged
                """).all(decoding: Row.self).isEmpty
        case .sqlite:
            // Two statements that readers of both (``snapshot(_:)``) never see halfway. A crash
            // between them loses the event only: the row has the data, and streams read it.
            let sql = self.sql
            return try await gate.run {
                let changed = try await sql.raw(update).all(decoding: Row.self)
                for row in changed {
                    try await sql.raw("""
                        INSERT INTO prediction_events (prediction_id, kind, data, created_at)
                        VALUES (\(bind: row.id), \(bind: eventKind.rawValue), \(bind: data), \(bind: now))
                        """).run()
                }
                return !changed.isEmpty
            }
        }
    }

    /// The prediction with the newest event logged for it, in one read: a stream sends what the
    /// row holds and follows the events after `seq`.
    package func snapshot(_ id: String) async throws -> (record: PredictionRecord, seq: Int64)? {
        struct Row: Decodable {
            var record: PredictionRecord
            var seq: Int64
            init(from decoder: any Decoder) throws {
                record = try PredictionRecord(from: decoder)
                seq = try decoder.container(keyedBy: Keys.self).decode(Int64.self, forKey: .event_seq)
            }
            enum Keys: String, CodingKey { case event_seq }
        }
        let query: SQLQueryString = """
            SELECT \(unsafeRaw: Self.columns),
              (SELECT COALESCE(MAX(e.seq), 0) FROM prediction_events e WHERE e.prediction_id = predictions.id) AS event_seq
            FROM predictions WHERE id = \(bind: id)
            """
        let sql = self.sql
        // One statement is one snapshot on PostgreSQL; on SQLite the gate keeps writes out.
        let row = kind == .sqlite ? try await gate.run { try await sql.raw(query).first(decoding: Row.self) }
                                  : try await sql.raw(query).first(decoding: Row.self)
        return row.map { ($0.record, $0.seq) }
    }

    /// The events of a prediction after `seq`, oldest first.
    package func changes(of id: String, after seq: Int64) async throws -> [PredictionChange] {
        struct Row: Decodable { var seq: Int64; var kind: String; var data: String }
        return try await sql.raw("""
            SELECT seq, kind, data FROM prediction_events WHERE prediction_id = \(bind: id) AND seq > \(bind: seq) ORDER BY seq
            """).all(decoding: Row.self).compactMap { row in
            switch PredictionChange.Kind(rawValue: row.kind) {
            case .progress:
                let delta = try? JSONDecoder().decode(ProgressDelta.self, from: Data(row.data.utf8))
                return PredictionChange(seq: row.seq, kind: .progress, items: delta?.output ?? [], logs: delta?.logs ?? "")
            case .done:
                return PredictionChange(seq: row.seq, kind: .done, items: [], logs: "")
            case nil:
                return nil
            }
        }
    }

    /// Drops events older than `cutoff`. A stream starts from the row, so the log only has to
    /// reach back as far as the slowest stream that is following it.
    package func removeEvents(before cutoff: String) async throws {
        try await sql.raw("DELETE FROM prediction_events WHERE created_at < \(bind: cutoff)").run()
    }
}
