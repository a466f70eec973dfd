import Foundation
import LatheSpec

/// Turns `-i name=value` arguments into typed inputs, following the declared types: numbers are
/// parsed, `@path` names a file, repeating an array input appends to it, JSON is accepted for
/// objects and arrays.
struct InputArguments {
    var spec: ModelSpec

    func parse(_ arguments: [String], into values: inout [String: JSONValue]) throws {
        var errors: [FieldError] = []
        for argument in arguments {
            guard let equals = argument.firstIndex(of: "=") else {
                errors.append(FieldError(field: argument, message: "write -i NAME=VALUE (or -i NAME=@file)"))
                continue
            }
            let name = String(argument[..<equals])
            let raw = String(argument[argument.index(after: equals)...])
            guard let input = spec.input(named: name) else {
                // Let the validator word it (with a did-you-mean), keeping the raw text.
                values[name] = .string(raw)
                continue
            }
            do {
                if input.type == .array {
                    if raw.hasPrefix("["), let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(raw.utf8)) {
                        values[name] = parsed
                    } else {
                        let item = try scalar(raw, type: input.items ?? .string, field: name)
                        values[name] = .array((values[name]?.arrayValue ?? []) + [item])
                    }
                } else {
                    values[name] = try scalar(raw, type: input.type, field: name)
                }
            } catch let error as FieldError {
                errors.append(error)
            }
        }
        if !errors.isEmpty { throw InputErrors(fields: errors) }
    }

    private func scalar(_ raw: String, type: ValueType, field: String) throws -> JSONValue {
        switch type {
        case .integer:
            guard let value = Int(raw) else { throw FieldError(field: field, message: "\"\(raw)\" is not an integer") }
            return .int(value)
        case .number:
            guard let value = Double(raw) else { throw FieldError(field: field, message: "\"\(raw)\" is not a number") }
            return .number(value)
        case .boolean:
            switch raw.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: throw FieldError(field: field, message: "\"\(raw)\" is not true or false")
            }
        case .object:
            guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(raw.utf8)), value.objectValue != nil else {
                throw FieldError(field: field, message: "is not a JSON object; write -i \(field)='{\"key\": 1}'")
            }
            return value
        case .file:
            // `@path` and plain paths are local files; URLs and data URIs are kept as given.
            if raw.hasPrefix("@") { return .string(String(raw.dropFirst())) }
            return .string(raw)
        default:
            return .string(raw)
        }
    }
}
