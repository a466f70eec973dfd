import Foundation
import LatheSpec

/// The run form generated from a version's inputs: one field per input, in declared order, with
/// the HTML constraints that mirror the schema (the browser checks them before sending; the
/// server's 422 messages come back beside the same fields).
enum FormFields {
    /// Template values for every input. `values` are what the user sent (after a 422), `errors`
    /// the server's messages by field.
    static func fields(_ spec: ModelSpec, values: [String: String] = [:], errors: [String: String] = [:]) -> [[String: Any]] {
        spec.inputs.filter { $0.deprecated != true }.map { input in
            var field: [String: Any] = [
                "name": input.name, "id": "input-\(input.name)", "label": input.name.replacingOccurrences(of: "_", with: " "),
                "type": input.type.rawValue, "required": input.isRequired,
            ]
            if let description = input.description { field["description"] = description }
            if let error = errors[input.name] { field["error"] = error }
            let value = values[input.name] ?? input.default.map(text) ?? ""
            field["value"] = value
            if let minimum = input.minimum { field["min"] = number(minimum, integer: input.type == .integer) }
            if let maximum = input.maximum { field["max"] = number(maximum, integer: input.type == .integer) }
            if let minLength = input.minLength { field["minlength"] = minLength }
            if let maxLength = input.maxLength { field["maxlength"] = maxLength }
            if let pattern = input.pattern { field["pattern"] = pattern }
            if let choices = input.choices {
                field["select"] = true
                field["options"] = choices.map { choice -> [String: Any] in
                    let option = text(choice)
                    return ["value": option, "selected": option == value]
                }
                return field
            }
            switch input.type {
            case .boolean:
                field["checkbox"] = true
                field["checked"] = values.isEmpty ? input.default == .bool(true) : values[input.name] == "true"
            case .integer, .number:
                field["step"] = input.type == .integer ? "1" : "any"
                if let minimum = input.minimum, let maximum = input.maximum, maximum > minimum,
                   input.type == .number || maximum - minimum <= 100 {
                    // A small, closed range reads best as a slider with its value beside it.
                    field["range"] = true
                    field["step"] = input.type == .integer ? "1" : number((maximum - minimum) / 100, integer: false)
                } else {
                    field["number"] = true
                }
            case .file:
                field["file"] = true
                field["accept"] = input.accept ?? ""
            case .secret:
                field["password"] = true
                field["value"] = ""
            case .object, .array:
                field["textarea"] = true
                field["json"] = true
            case .string, .iterator:
                if let maxLength = input.maxLength, maxLength <= 200 { field["text"] = true } else { field["textarea"] = true }
            }
            return field
        }
    }

    /// The prediction input from the submitted form. Values that do not parse are passed on as
    /// text so that the validator's message ("expected integer") is the one shown. Files are
    /// stored first by `store`, which returns the URL the input names.
    static func input(_ form: WebForm, spec: ModelSpec, store: (UploadedFile) async throws -> String) async throws -> [String: JSONValue] {
        var input: [String: JSONValue] = [:]
        for field in spec.inputs {
            if field.type == .file {
                if let file = form.files[field.name] { input[field.name] = .string(try await store(file)) }
                continue
            }
            if field.type == .boolean && field.choices == nil {
                input[field.name] = .bool(form[field.name] == "true")
                continue
            }
            guard let raw = form[field.name], !(raw.isEmpty && field.type != .string) else { continue }
            if raw.isEmpty && field.isRequired == false && field.default == nil { continue }
            switch field.type {
            case .integer:
                input[field.name] = Int(raw).map { .int($0) } ?? .string(raw)
            case .number:
                input[field.name] = Double(raw).map { .number($0) } ?? .string(raw)
            case .boolean:
                input[field.name] = .bool(raw == "true")
            case .object, .array:
                input[field.name] = (try? JSONDecoder().decode(JSONValue.self, from: Data(raw.utf8))) ?? .string(raw)
            default:
                if raw.isEmpty && field.isRequired { continue }
                input[field.name] = .string(raw)
            }
        }
        return input
    }

    static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let string): return string
        case .bool(let bool): return bool ? "true" : "false"
        case .int(let int): return String(int)
        case .number(let double): return number(double, integer: false)
        case .null: return ""
        default: return String(decoding: (try? JSON.canonical(value)) ?? Data(), as: UTF8.self)
        }
    }

    static func number(_ value: Double, integer: Bool) -> String {
        // Checked: a bound from a stored schema may be any double (1e300, NaN).
        if integer || value == value.rounded() && abs(value) < 1e15, let whole = value.exactInteger { return String(whole) }
        return String(value)
    }
}
