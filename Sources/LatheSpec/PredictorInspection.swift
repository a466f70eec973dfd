import Foundation

/// What the static inspector (`inspect_predictor.py`) reports about an entry point.
public struct PredictorInspection: Sendable, Codable {
    public struct TypeInfo: Sendable, Codable, Hashable {
        public var type: String?
        public var items: String?
        public var nullable: Bool?
        public var concatenate: Bool?
        public var choices: [JSONValue]?
        public var text: String?
    }

    public struct Default: Sendable, Codable {
        /// `none`, `literal`, `input` (a Cog `Input(...)` call) or `other`.
        public var kind: String
        public var value: JSONValue?
        public var input: [String: JSONValue]?
        public var hasDefault: Bool?
        public var unreadable: [String]?
        public var text: String?

        enum CodingKeys: String, CodingKey {
            case kind, value, input, text, unreadable
            case hasDefault = "has_default"
        }

        /// The default value written in code, if any (`Input(default=…)` or a plain literal).
        public var literal: JSONValue?? {
            switch kind {
            case "literal": return .some(value ?? .null)
            case "input": return hasDefault == true ? .some(input?["default"] ?? .null) : nil
            default: return nil
            }
        }

        public var isRequired: Bool {
            kind == "none" || (kind == "input" && hasDefault != true)
        }
    }

    public struct Parameter: Sendable, Codable {
        public var name: String
        public var line: Int
        public var column: Int
        public var annotation: TypeInfo?
        public var `default`: Default
    }

    public struct Function: Sendable, Codable {
        public var name: String
        public var line: Int
        public var column: Int
        public var params: [Parameter]
        public var varKwargs: Bool
        public var returns: TypeInfo?

        enum CodingKeys: String, CodingKey {
            case name, line, column, params, returns
            case varKwargs = "var_kwargs"
        }
    }

    public var error: String?
    public var message: String?
    public var line: Int?
    public var column: Int?
    public var available: [String]?
    public var kind: String?
    public var name: String?
    public var predict: Function?
    public var setup: Function?

    /// Runs the inspector on `file` (a path inside `project`) looking for `symbol`; of a class,
    /// `role` picks the method (`predict`/`run`, or `train`).
    public static func inspect(project: URL, file: String, symbol: String, role: EntryRole = .predict) throws -> PredictorInspection {
        guard let script = Bundle.module.url(forResource: "inspect_predictor", withExtension: "py") else {
            throw Diagnostic(nil, "inspect_predictor.py is missing from the Lathe installation", fix: "reinstall Lathe")
        }
        let result = try ChildProcess.run(ChildProcess.python, [script.path, project.appendingPathComponent(file).path, symbol, role.rawValue])
        guard result.status == 0 else {
            throw Diagnostic(nil, "the predictor inspector failed: \(result.stderrText)", fix: "check that python3 ≥ 3.9 is installed")
        }
        return try JSONDecoder().decode(PredictorInspection.self, from: result.stdout)
    }

    /// The path of the inspector script, for tools that run it themselves.
    public static var scriptURL: URL? { Bundle.module.url(forResource: "inspect_predictor", withExtension: "py") }
}
