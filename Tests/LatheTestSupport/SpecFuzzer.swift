import LatheSpec

/// Random specs for fuzzing (issue 19): every field, usually plausible, often extreme or of the
/// wrong type, as the JSON a pushed config holds (`inputs` a list of objects with `name`).
public enum SpecFuzzer {
    public struct Generator: RandomNumberGenerator {
        public var state: UInt64
        public init(state: UInt64) { self.state = state }
        public mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    public static let numbers: [JSONValue] = [
        .number(1e300), .number(-1e300), .number(9.3e18), .number(-9.3e18), .number(1.7976931348623157e308), .number(5e-324),
        .int(Int.max), .int(Int.min), .int(9_007_199_254_740_993), .int(0), .int(-1), .int(1), .number(0.5), .number(-0.0), .number(2.5),
    ]
    public static let strings: [String] = [
        "", " ", "3.11", "3", "3.1111", "/tmp/x", "../../etc/passwd", "python3; rm -rf /", "\0", "\u{202E}abc", "<script>alert(1)</script>",
        "a\" onerror=\"x", String(repeating: "x", count: 20_000), "(a+)+$", "[", "predict.py:Predictor", "x.py:1bad", "/abs.py:P",
        "30m", "9999999999999999999h", "-5s", "0", "string", "integer", "number", "file", "iterator", "secret", "array", "object", "é",
    ]

    public static func anyValue(_ random: inout Generator, depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0..<9, using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2, 3: return numbers.randomElement(using: &random)!
        case 4, 5: return .string(strings.randomElement(using: &random)!)
        case 6 where depth < 3: return .array((0..<Int.random(in: 0..<4, using: &random)).map { _ in anyValue(&random, depth: depth + 1) })
        case 7 where depth < 3: return .object(["type": anyValue(&random, depth: depth + 1), "x": anyValue(&random, depth: depth + 1)])
        default: return .string(ValueType.allCases.randomElement(using: &random)!.rawValue)
        }
    }

    /// A value for `key`: usually a plausible one, often an extreme one or one of the wrong type.
    public static func field(_ plausible: JSONValue, _ random: inout Generator) -> JSONValue {
        Int.random(in: 0..<8, using: &random) != 0 ? plausible : anyValue(&random)
    }

    public static func input(_ random: inout Generator, index: Int) -> JSONValue {
        var object: [String: JSONValue] = [
            "name": field(.string("in\(index)"), &random),
            "type": field(.string(ValueType.inputTypes.randomElement(using: &random)!.rawValue), &random),
        ]
        let optional: [(String, JSONValue)] = [
            ("items", .string("integer")), ("description", .string("help")), ("default", numbers.randomElement(using: &random)!),
            ("minimum", numbers.randomElement(using: &random)!), ("maximum", numbers.randomElement(using: &random)!),
            ("min_length", .int(Int.random(in: -2...5, using: &random))), ("max_length", numbers.randomElement(using: &random)!),
            ("pattern", .string(strings.randomElement(using: &random)!)), ("choices", .array([numbers.randomElement(using: &random)!, .string("a")])),
            ("accept", .string("image/*")), ("deprecated", .bool(true)), ("nullable", .bool(Bool.random(using: &random))),
        ]
        for (key, value) in optional where Bool.random(using: &random) { object[key] = field(value, &random) }
        return .object(object)
    }

    /// An output part, nesting items and properties up to past the parser's depth limit, with
    /// wrong types and extreme values mixed in at every level.
    public static func output(_ random: inout Generator, depth: Int) -> JSONValue {
        let type = ValueType.allCases.randomElement(using: &random)!
        var object: [String: JSONValue] = ["type": field(.string(type.rawValue), &random)]
        let deeper = depth < 10 && Int.random(in: 0..<3, using: &random) != 0
        if type == .array || type == .iterator || Bool.random(using: &random) {
            object["items"] = deeper ? output(&random, depth: depth + 1) : field(.string("string"), &random)
        }
        if type == .object, deeper {
            object["properties"] = .object(Dictionary(uniqueKeysWithValues: (0..<Int.random(in: 0..<4, using: &random)).map {
                ("p\($0)", output(&random, depth: depth + 1))
            }))
        }
        for (key, value) in [("nullable", JSONValue.bool(true)), ("description", .string("d")), ("concatenate", .bool(true))] where Bool.random(using: &random) {
            object[key] = field(value, &random)
        }
        return .object(object)
    }

    public static func spec(_ random: inout Generator) -> JSONValue {
        var object: [String: JSONValue] = [
            "python": field(.string("3.11"), &random), "python_packages": field(.array([]), &random),
            "predict": field(.string("predict.py:Predictor"), &random),
            "inputs": .array((0..<Int.random(in: 0..<5, using: &random)).map { input(&random, index: $0) }),
            "output": field(output(&random, depth: 1), &random),
            "weights": field(.array([]), &random), "concurrency": field(.int(1), &random), "timeout": field(.int(60), &random),
            "network": field(.bool(false), &random),
        ]
        for key in ["name", "description", "license", "requirements", "safety_checker"] where Bool.random(using: &random) {
            object[key] = field(.string(key == "name" ? "acme/m" : "x"), &random)
        }
        return .object(object)
    }

}
