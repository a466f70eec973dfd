import Foundation
import LatheSpec

/// A line the runner writes (see `runner.py` for the protocol).
struct RunnerMessage: Decodable, Sendable {
    var type: String
    var id: String?
    var data: String?
    var index: Int?
    var value: JSONValue?
    var status: String?
    var output: JSONValue?
    var error: String?
    var predictTime: Double?
    var setupTime: Double?
    /// A `metric` event's name and mode (`replace`, `incr`, `append`).
    var name: String?
    var mode: String?

    enum CodingKeys: String, CodingKey {
        case type, id, data, index, value, status, output, error, name, mode
        case predictTime = "predict_time", setupTime = "setup_time"
    }

    /// A line read with the fast JSON reader (once or more per prediction, on its critical
    /// path), or with JSONDecoder when the fast reader refuses it; nil when it is not a message.
    init?(line: Data) {
        guard let parsed = JSONValue(parsing: String(decoding: line, as: UTF8.self)) else {
            guard let message = try? JSONDecoder().decode(RunnerMessage.self, from: line) else { return nil }
            self = message
            return
        }
        guard let object = parsed.objectValue, let type = object["type"]?.stringValue else { return nil }
        func string(_ key: String) -> String? { object[key]?.stringValue }
        func present(_ key: String) -> JSONValue? { object[key].flatMap { $0 == .null ? nil : $0 } }
        self.type = type
        id = string("id")
        data = string("data")
        if case .int(let index)? = object["index"] { self.index = index }
        value = present("value")
        status = string("status")
        output = present("output")
        error = string("error")
        predictTime = object["predict_time"]?.doubleValue
        setupTime = object["setup_time"]?.doubleValue
        name = string("name")
        mode = string("mode")
    }
}

/// A line sent to the runner.
struct RunnerCommand: Encodable, Sendable {
    var type: String
    var id: String?
    var input: [String: JSONValue]?
    var outputDir: String?
    /// Run the spec's safety checker on the output.
    var safety: Bool?
    /// The request's `context` (Cog's `current_scope().context`).
    var context: [String: String]?

    enum CodingKeys: String, CodingKey {
        case type, id, input, safety, context
        case outputDir = "output_dir"
    }

    /// The line's JSON, written without JSONEncoder (once per prediction, on its critical path).
    var line: [UInt8] {
        var object: [String: JSONValue] = ["type": .string(type)]
        if let id { object["id"] = .string(id) }
        if let input { object["input"] = .object(input) }
        if let outputDir { object["output_dir"] = .string(outputDir) }
        if let safety { object["safety"] = .bool(safety) }
        if let context, !context.isEmpty { object["context"] = .object(context.mapValues { .string($0) }) }
        return JSONValue.object(object).serialized() + [0x0A]
    }
}

/// Something a prediction produced before it finished.
public enum RunnerEvent: Sendable {
    case log(String)
    /// One item of an iterator output, in order.
    case output(index: Int, value: JSONValue)
}

extension PredictionStatus {
    /// How a run ended, as the prediction's status.
    public init(_ status: PredictionOutcome.Status) {
        switch status {
        case .succeeded: self = .succeeded
        case .failed: self = .failed
        case .canceled: self = .canceled
        }
    }
}

/// How a prediction ended. Statuses follow Replicate's (the terminal ones of ``PredictionStatus``).
public struct PredictionOutcome: Sendable, Codable {
    public enum Status: String, Sendable, Codable {
        case succeeded, failed, canceled
    }

    public var status: Status
    /// The output as the runner sent it; files appear as `{"$file": NAME}` in the output folder.
    public var output: JSONValue?
    public var error: String?
    public var logs: String
    public var predictTime: Double?
    /// What the model recorded with `cog.emit_metric` / `current_scope().record_metric`.
    public var metrics: [String: JSONValue]?

    public init(status: Status, output: JSONValue? = nil, error: String? = nil, logs: String = "", predictTime: Double? = nil) {
        self.status = status
        self.output = output
        self.error = error
        self.logs = logs
        self.predictTime = predictTime
    }
}

/// Whether the model came up.
public enum SetupResult: Sendable {
    case ready(setupTime: Double, logs: String)
    case failed(error: String, logs: String)
}
