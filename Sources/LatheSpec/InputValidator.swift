import Foundation

/// One rejected input field, reported before the model runs.
public struct FieldError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "input \"\(field)\": \(message)" }
}

/// All field errors of one prediction request.
public struct InputErrors: Error, Sendable, CustomStringConvertible {
    public var fields: [FieldError]

    public init(fields: [FieldError]) {
        self.fields = fields
    }

    public var description: String { fields.map(\.description).joined(separator: "\n") }
}

/// Checks prediction inputs against a spec, the same way for the CLI and the server.
public enum InputValidator {
    /// Validates `values`, fills in defaults, and returns the inputs the predictor receives.
    public static func validate(_ values: [String: JSONValue], spec: ModelSpec) throws(InputErrors) -> [String: JSONValue] {
        var errors: [FieldError] = []
        var result: [String: JSONValue] = [:]
        for name in values.keys.sorted() where spec.input(named: name) == nil {
            let hint = closest(to: name, in: spec.inputs.map(\.name)).map { "; did you mean \"\($0)\"?" } ?? ""
            errors.append(FieldError(field: name, message: "is not an input of this model\(hint) (inputs: \(spec.inputs.map(\.name).joined(separator: ", ")))"))
        }
        for input in spec.inputs {
            guard let value = values[input.name], value != .null else {
                if let value = input.default {
                    result[input.name] = value
                } else if input.nullable == true || values[input.name] == .null && input.nullable == true {
                    result[input.name] = .null
                } else {
                    errors.append(FieldError(field: input.name, message: "is required"))
                }
                continue
            }
            if let message = typeMismatch(value, type: input.type, items: input.items) {
                errors.append(FieldError(field: input.name, message: "is \(value.display), \(message)"))
                continue
            }
            var normalized = value
            if input.type == .number, case .int(let int) = value { normalized = .number(Double(int)) }
            let violations = violations(of: normalized, against: input)
            if violations.isEmpty {
                result[input.name] = normalized
            } else {
                errors.append(contentsOf: violations.map { FieldError(field: input.name, message: $0) })
            }
        }
        if !errors.isEmpty { throw InputErrors(fields: errors) }
        return result
    }

    /// Why `value` is not of `type`, or nil when it is.
    public static func typeMismatch(_ value: JSONValue, type: ValueType, items: ValueType? = nil) -> String? {
        switch (type, value) {
        case (.string, .string), (.secret, .string), (.file, .string), (.boolean, .bool), (.integer, .int),
             (.number, .int), (.number, .number), (.object, .object):
            return nil
        case (.integer, .number(let double)) where double.rounded() == double && abs(double) < 1e15:
            return nil
        case (.array, .array(let elements)), (.iterator, .array(let elements)):
            guard let items else { return nil }
            for (index, element) in elements.enumerated() {
                if let message = typeMismatch(element, type: items) { return "item \(index) \(message)" }
            }
            return nil
        default:
            let article = [.integer, .object, .array, .iterator].contains(type) ? "an" : "a"
            let name = type == .file ? "file (a path, URL or data URI)" : type.rawValue
            return "not \(article) \(name)"
        }
    }

    /// The constraints `value` breaks, as phrases that follow the value ("is above maximum 3").
    public static func violations(of value: JSONValue, against input: InputSpec) -> [String] {
        var messages: [String] = []
        if case .array(let elements) = value {
            if let minimum = input.minLength, elements.count < minimum { messages.append("has \(elements.count) items, fewer than min_length \(minimum)") }
            if let maximum = input.maxLength, elements.count > maximum { messages.append("has \(elements.count) items, more than max_length \(maximum)") }
            for element in elements {
                var item = input
                item.minLength = nil
                item.maxLength = nil
                if case .string = element {} else { item.pattern = nil }
                messages += violations(of: element, against: item)
            }
            return messages
        }
        if let number = value.doubleValue {
            if let minimum = input.minimum, number < minimum { messages.append("is below minimum \(format(minimum))") }
            if let maximum = input.maximum, number > maximum { messages.append("is above maximum \(format(maximum))") }
        }
        if case .string(let text) = value {
            let length = text.count
            if let minimum = input.minLength, length < minimum { messages.append("is \(length) characters long, shorter than min_length \(minimum)") }
            if let maximum = input.maxLength, length > maximum { messages.append("is \(length) characters long, longer than max_length \(maximum)") }
            if let pattern = input.pattern {
                switch PatternMatch.find(pattern, in: text) {
                case .matched: break
                case .notMatched: messages.append("does not match pattern \(pattern)")
                case .notDecided:
                    messages.append("could not be checked against pattern \(pattern) within Lathe's limit (the expression backtracks too much "
                                    + "on this text); send a shorter or simpler value, or ask the model's author to simplify the pattern")
                }
            }
        }
        if let choices = input.choices, !choices.contains(where: { $0 == value || ($0.doubleValue != nil && $0.doubleValue == value.doubleValue) }) {
            messages.append("must be one of \(JSONValue.array(choices).display)")
        }
        return messages
    }

    private static func format(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(value.exactInteger ?? 0) : String(value)
    }
}
