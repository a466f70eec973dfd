import Foundation
import Yams

/// `lathe validate --write`: fills or updates `inputs:` in `lathe.yaml` from `predict()`'s
/// signature, so an input is written once, in the code, and the spec (still the source of
/// truth for the registry) follows it. Everything else in the file, comments included, is kept.
public enum InputsWriter {
    /// The new `lathe.yaml` text, or `nil` when it already declares what the signature says.
    ///
    /// For each parameter, in signature order, what the code states (type, default,
    /// `Input(...)` or `Annotated[…, Input(...)]` constraints) wins, and what only the spec
    /// states (a description, a pattern) is kept; a declared type the code's annotation is
    /// compatible with (`file` for `str`, `secret` for `str`) stays. Declared inputs that
    /// `predict()` does not take are dropped, unless it takes `**kwargs`.
    public static func rewrite(_ text: String, spec: ModelSpec, inspection: PredictorInspection) throws -> String? {
        guard let predict = inspection.predict else {
            throw Diagnostic(spec.predictLocation, "\(spec.predict) has no predict() or run() to read inputs from",
                             fix: "add `def predict(self, ...)` first")
        }
        let file = spec.predict.file
        var entries: [(String, Entry)] = []
        for parameter in predict.params {
            let declared = spec.input(named: parameter.name)
            var fields = declared.map(Self.fields) ?? []
            let fromCode: [(String, String)]
            do {
                fromCode = try CogImport.fields(parameter, file: file).map(Self.pair)
            } catch where declared != nil {
                fromCode = []  // no annotation Lathe reads: the declaration stays as written
            }
            for (key, value) in fromCode {
                if key == "type" || key == "items", let declared, let annotation = parameter.annotation,
                   PredictorCheck.compatible(declared, annotation) { continue }
                if let index = fields.firstIndex(where: { $0.0 == key }) { fields[index].1 = value } else { fields.append((key, value)) }
            }
            if parameter.default.literal == nil, declared?.default == nil { fields.removeAll { $0.0 == "default" } }
            fields.sort { (order.firstIndex(of: $0.0) ?? order.count) < (order.firstIndex(of: $1.0) ?? order.count) }
            // An entry that says what it said keeps its own lines (layout, quoting, comments).
            if let declared, fields.map({ "\($0.0): \($0.1)" }) == Self.fields(declared).map({ "\($0.0): \($0.1)" }),
               let original = source(of: declared, in: spec, text: text) {
                entries.append((parameter.name, .lines(original)))
            } else {
                entries.append((parameter.name, .fields(fields)))
            }
        }
        if predict.varKwargs {
            for input in spec.inputs where !predict.params.contains(where: { $0.name == input.name }) {
                entries.append((input.name, source(of: input, in: spec, text: text).map(Entry.lines) ?? .fields(fields(input))))
            }
        }
        let block = entries.isEmpty ? "inputs: {}\n"
            : "inputs:\n" + entries.map { name, entry in
                switch entry {
                case .lines(let lines): lines.map { $0 + "\n" }.joined()
                case .fields(let fields): "  \(name): {" + fields.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}\n"
                }
            }.joined()
        let updated = try replaceInputs(in: text, with: block)
        return updated == text ? nil : updated
    }

    private enum Entry {
        case lines([String])
        case fields([(String, String)])
    }

    /// The order fields are written in (the order `docs/spec.md` lists them).
    static let order = ["type", "items", "description", "default", "minimum", "maximum", "min_length", "max_length",
                        "pattern", "choices", "accept", "deprecated", "nullable"]

    /// The lines that declare `input`: from its key to the next input's (or the end of the
    /// block), without trailing blank lines; nil when the block is written in flow style.
    static func source(of input: InputSpec, in spec: ModelSpec, text: String) -> [String]? {
        guard let line = input.location?.line else { return nil }
        let lines = text.components(separatedBy: "\n")
        let starts = spec.inputs.compactMap(\.location?.line).sorted()
        guard starts.count == spec.inputs.count, Set(starts).count == starts.count, line - 1 < lines.count else { return nil }
        var end = starts.first { $0 > line }.map { $0 - 1 } ?? lines.count
        // The last entry runs until the next line that is not indented deeper than the entry.
        let indent = lines[line - 1].prefix { $0 == " " }.count
        guard indent > 0 else { return nil }
        if starts.last == line {
            end = line
            while end < lines.count, lines[end].prefix(while: { $0 == " " }).count > indent, !lines[end].trimmingCharacters(in: .whitespaces).isEmpty { end += 1 }
        }
        var chosen = Array(lines[(line - 1)..<end])
        while let last = chosen.last, last.trimmingCharacters(in: .whitespaces).isEmpty, chosen.count > 1 { chosen.removeLast() }
        return chosen
    }

    /// `text` with its top-level `inputs:` entry replaced by `block` (or `block` added before
    /// `output:`), keeping the comments and blank lines that lead into the next key.
    static func replaceInputs(in text: String, with block: String) throws -> String {
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        let keys = (try Yams.compose(yaml: text)?.mapping).map { mapping in
            mapping.compactMap { key, _ -> (String, Int)? in key.string.map { ($0, key.mark?.line ?? 0) } }
        } ?? []
        let starts = keys.map { $0.1 - 1 }.sorted()
        let blockLines = block.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        if let start = keys.first(where: { $0.0 == "inputs" }).map({ $0.1 - 1 }) {
            var end = starts.first { $0 > start } ?? lines.count
            while end > start + 1, lines[end - 1].trimmingCharacters(in: .whitespaces).isEmpty || lines[end - 1].hasPrefix("#") { end -= 1 }
            lines.replaceSubrange(start..<end, with: blockLines)
        } else {
            let at = keys.first { $0.0 == "output" }.map { $0.1 - 1 } ?? lines.count
            lines.insert(contentsOf: blockLines, at: at)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A declared input's fields, as `lathe.yaml` writes them.
    static func fields(_ input: InputSpec) -> [(String, String)] {
        var fields: [(String, String)] = [("type", input.type.rawValue)]
        func add(_ key: String, _ value: JSONValue?) { if let value { fields.append((key, CogImport.json(value))) } }
        add("items", input.items.map { .string($0.rawValue) })
        add("description", input.description.map(JSONValue.string))
        add("default", input.default)
        add("minimum", input.minimum.map { $0.exactInteger.map(JSONValue.int) ?? .number($0) })
        add("maximum", input.maximum.map { $0.exactInteger.map(JSONValue.int) ?? .number($0) })
        add("min_length", input.minLength.map(JSONValue.int))
        add("max_length", input.maxLength.map(JSONValue.int))
        add("pattern", input.pattern.map(JSONValue.string))
        add("choices", input.choices.map(JSONValue.array))
        add("accept", input.accept.map(JSONValue.string))
        add("deprecated", input.deprecated.map(JSONValue.bool))
        add("nullable", input.nullable.map(JSONValue.bool))
        return fields.map { key, value in key == "type" || key == "items" ? (key, value.replacingOccurrences(of: "\"", with: "")) : (key, value) }
    }

    private static func pair(_ field: String) -> (String, String) {
        let parts = field.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")
    }

    /// A line diff of two texts (unified style, three lines of context), for showing what
    /// `--write` changed.
    public static func diff(_ old: String, _ new: String, name: String) -> String {
        let a = old.components(separatedBy: "\n"), b = new.components(separatedBy: "\n")
        guard a.count * b.count <= 4_000_000 else { return "--- \(name)\n+++ \(name)\n(too large to show)\n" }
        // Longest common subsequence table, from the end.
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                table[i][j] = a[i] == b[j] ? table[i + 1][j + 1] + 1 : max(table[i + 1][j], table[i][j + 1])
            }
        }
        var lines: [(Character, String)] = []
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i] == b[j] { lines.append((" ", a[i])); i += 1; j += 1 }
            else if i < a.count, j == b.count || table[i + 1][j] >= table[i][j + 1] { lines.append(("-", a[i])); i += 1 }
            else { lines.append(("+", b[j])); j += 1 }
        }
        var shown = Set<Int>()
        for index in lines.indices where lines[index].0 != " " {
            shown.formUnion(max(index - 3, 0)...min(index + 3, lines.count - 1))
        }
        var out = "--- \(name)\n+++ \(name)\n"
        var previous = -1
        for index in shown.sorted() {
            if index != previous + 1 { out += "@@\n" }
            out += "\(lines[index].0)\(lines[index].1)\n"
            previous = index
        }
        return out
    }
}
