import Foundation
import LatheSpec
import LatheStore

/// Builds Replicate's prediction JSON, for API answers and webhook bodies alike.
package struct PredictionShape {
    package let registry: Registry

    /// Replicate's prediction object.
    package func json(_ record: PredictionRecord) -> JSONValue {
        json(record, output: record.dataRemoved ? .null : Self.decode(record.output))
    }

    /// The same, with small output files of this registry inline as data URIs (`Prefer: wait`).
    package func jsonInliningFiles(_ record: PredictionRecord) async -> JSONValue {
        json(record, output: record.dataRemoved ? .null : await OutputFiles.inline(Self.decode(record.output), registry: registry))
    }

    /// Stored JSON as a value: the fast reader first (this runs three times per answer), and
    /// Foundation's decoder for anything it refuses (only text this server wrote is stored).
    private static func decode(_ text: String?) -> JSONValue {
        guard let text else { return .null }
        return JSONValue(parsing: text) ?? (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .null
    }

    private func json(_ record: PredictionRecord, output: JSONValue) -> JSONValue {
        func decode(_ text: String?) -> JSONValue { Self.decode(text) }
        var metrics = decode(record.metrics).objectValue ?? [:]
        if let total = record.totalTime { metrics["total_time"] = .number(total) }
        var fields: [String: JSONValue] = [
            "id": .string(record.id), "model": .string(record.model), "version": .string(record.version),
            "input": record.dataRemoved ? .null : decode(record.input), "output": output, "logs": .string(record.logs),
            "error": .optional(record.error), "status": .string(record.status.rawValue), "source": .string(record.source),
            "created_at": .string(record.createdAt), "started_at": .optional(record.startedAt), "completed_at": .optional(record.completedAt),
            "data_removed": .bool(record.dataRemoved), "metrics": record.isTerminal ? .object(metrics) : .object([:]),
        ]
        if let order = record.trainingOrder {
            // Replicate's training object: the version trained (the row runs the config derived
            // from it), where its version goes, and `output` {version, weights} once it succeeded.
            let base = "\(registry.baseURL)/v1/trainings/\(record.id)"
            fields["version"] = .string(order.baseVersion)
            fields["destination"] = .string(order.destination)
            fields["urls"] = .object(["get": .string(base), "cancel": .string(base + "/cancel")])
        } else {
            let base = "\(registry.baseURL)/v1/predictions/\(record.id)"
            fields["urls"] = .object(["get": .string(base), "cancel": .string(base + "/cancel"), "web": .string("\(registry.baseURL)/p/\(record.id)"),
                                      "stream": .string(registry.baseURL + registry.streamPath(record.id))])
        }
        return .object(fields)
    }

    /// Every stored property, as the memberwise initializer would take them.
    package init(registry: Registry) {
        self.registry = registry
    }
}
