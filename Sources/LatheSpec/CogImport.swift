import Foundation
import Yams

/// Turns a Cog project (`cog.yaml` plus a predictor using `Input(...)`) into `lathe.yaml` text
/// with the same inputs, defaults, constraints and output.
public enum CogImport {
    /// Reads `cog.yaml` and the predictor in `project` and returns the `lathe.yaml` to write.
    public static func convert(project: URL) throws -> String {
        let cogURL = project.appendingPathComponent("cog.yaml")
        guard let data = FileManager.default.contents(atPath: cogURL.path) else {
            throw Diagnostic(nil, "no cog.yaml in \(project.path)", fix: "run --from-cog in the folder of a Cog project")
        }
        let text = String(decoding: data, as: UTF8.self)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw Diagnostic(SourceLocation(file: "cog.yaml", line: 1, column: 1), "cannot read cog.yaml: \(error)")
        }
        let root = node?.mapping
        let build = root?["build"]?.mapping
        guard let entryText = (root?["run"] ?? root?["predict"])?.string, let entry = EntryPoint(parsing: entryText) else {
            throw Diagnostic(SourceLocation(file: "cog.yaml", line: 1, column: 1), "cog.yaml has no run: or predict: entry",
                             fix: "add `predict: predict.py:Predictor` to cog.yaml")
        }
        let inspection = try PredictorInspection.inspect(project: project, file: entry.file, symbol: entry.symbol)
        if let error = inspection.error {
            throw Diagnostic(SourceLocation(file: entry.file, line: inspection.line ?? 1, column: inspection.column ?? 1),
                             "cannot read the predictor: \(inspection.message ?? error)")
        }
        guard let predict = inspection.predict else {
            throw Diagnostic(SourceLocation(file: entry.file, line: inspection.line ?? 1, column: 1),
                             "\(entry.symbol) has no predict() or run() method")
        }

        var lines: [String] = ["# Converted from cog.yaml by `lathe init --from-cog`."]
        if let image = root?["image"]?.string {
            let name = image.split(separator: "/").suffix(2).joined(separator: "/")
            if name.contains("/") { lines.append("name: \(name)") }
        }
        var python = build?["python_version"].map { $0.string ?? "" } ?? ModelSpec.defaultPython.description
        python = python.split(separator: ".").prefix(2).joined(separator: ".")
        lines.append("python: \(quote(python))")
        if let requirements = build?["python_requirements"]?.string {
            lines.append("requirements: \(quote(requirements))")
        } else if let packages = build?["python_packages"]?.sequence {
            lines.append("python_packages: [" + packages.compactMap(\.string).map(quote).joined(separator: ", ") + "]")
        }
        lines.append("predict: \(entry)")
        if predict.params.isEmpty {
            lines.append("inputs: {}")
        } else {
            lines.append("inputs:")
        }
        for parameter in predict.params {
            let declaration = try fields(parameter, file: entry.file).joined(separator: ", ")
            lines.append("  \(parameter.name): {\(declaration)}")
        }
        lines.append("output: {" + output(predict.returns).joined(separator: ", ") + "}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// One parameter as the fields of its `inputs:` entry (`type: integer`, `minimum: 1`, …), values in JSON.
    static func fields(_ parameter: PredictorInspection.Parameter, file: String) throws -> [String] {
        guard let annotation = parameter.annotation, let type = annotation.type else {
            throw Diagnostic(SourceLocation(file: file, line: parameter.line, column: parameter.column),
                             "parameter \"\(parameter.name)\" has annotation \(parameter.annotation?.text ?? "none") that Lathe cannot map",
                             fix: "annotate it with str, int, float, bool, Path, Secret, dict or list[...]")
        }
        var result = ["type: \(type)"]
        if type == "array" { result.append("items: \(annotation.items ?? "string")") }
        let options = parameter.default.input ?? [:]
        if let value = options["description"] { result.append("description: \(json(value))") }
        var choices = options["choices"]
        if choices == nil, let literal = annotation.choices { choices = .array(literal) }
        if let value = choices { result.append("choices: \(json(value))") }
        for (cog, lathe) in [("ge", "minimum"), ("le", "maximum"), ("min_length", "min_length"), ("max_length", "max_length"),
                             ("regex", "pattern"), ("deprecated", "deprecated")] {
            if let value = options[cog] { result.append("\(lathe): \(json(value))") }
        }
        if let value = options["accept"] ?? nil, type == "file" { result.append("accept: \(json(value))") }
        switch parameter.default.literal {
        case .some(.some(.null)), .some(nil): result.append("nullable: true")
        case .some(.some(let value)) where type != "file": result.append("default: \(json(value))")
        default: if annotation.nullable == true { result.append("nullable: true") }
        }
        return result
    }

    private static func output(_ returns: PredictorInspection.TypeInfo?) -> [String] {
        guard let returns, let type = returns.type else { return ["type: object"] }
        var result = ["type: \(type)"]
        if type == "array" || type == "iterator" { result.append("items: \(returns.items ?? "string")") }
        if returns.concatenate == true { result.append("concatenate: true") }
        return result
    }

    /// JSON is valid YAML flow syntax, and keeps strings, numbers and lists exact.
    static func json(_ value: JSONValue) -> String {
        (try? String(decoding: JSON.canonical(value), as: UTF8.self)) ?? "null"
    }

    private static func quote(_ text: String) -> String { json(.string(text)) }
}
