import Foundation
import LatheSpec
import Testing
@testable import LatheRegistry

/// Issue 19: every field of a spec, as a pushed config's JSON and as `lathe.yaml` text, with
/// extreme values and wrong types, goes through everything that reads a spec — the config
/// decoder and its check, the YAML parser, the OpenAPI schema (`lathe schema`, the versions
/// API), the run form, the API snippet and the input validator — and nothing may trap, checked
/// or not (versions stored before the check existed are rendered too). Seeded and bounded:
/// `LATHE_FUZZ_CASES` (default 3000) cases or 60 s, whichever comes first.
@Suite("fuzzing the spec schema through every reader")
struct SpecFuzzTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let numbers: [JSONValue] = [
        .number(1e300), .number(-1e300), .number(9.3e18), .number(-9.3e18), .number(1.7976931348623157e308), .number(5e-324),
        .int(Int.max), .int(Int.min), .int(9_007_199_254_740_993), .int(0), .int(-1), .int(1), .number(0.5), .number(-0.0), .number(2.5),
    ]
    static let strings: [String] = [
        "", " ", "3.11", "3", "3.1111", "/tmp/x", "../../etc/passwd", "python3; rm -rf /", "\0", "\u{202E}abc", "<script>alert(1)</script>",
        "a\" onerror=\"x", String(repeating: "x", count: 20_000), "(a+)+$", "[", "predict.py:Predictor", "x.py:1bad", "/abs.py:P",
        "30m", "9999999999999999999h", "-5s", "0", "string", "integer", "number", "file", "iterator", "secret", "array", "object", "é",
    ]

    static func anyValue(_ random: inout Generator, depth: Int = 0) -> JSONValue {
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
    static func field(_ plausible: JSONValue, _ random: inout Generator) -> JSONValue {
        Int.random(in: 0..<8, using: &random) != 0 ? plausible : anyValue(&random)
    }

    static func input(_ random: inout Generator, index: Int) -> JSONValue {
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

    static func spec(_ random: inout Generator) -> JSONValue {
        var object: [String: JSONValue] = [
            "python": field(.string("3.11"), &random), "python_packages": field(.array([]), &random),
            "predict": field(.string("predict.py:Predictor"), &random),
            "inputs": .array((0..<Int.random(in: 0..<5, using: &random)).map { input(&random, index: $0) }),
            "output": field(.object(["type": .string(ValueType.allCases.randomElement(using: &random)!.rawValue), "items": .string("string")]), &random),
            "weights": field(.array([]), &random), "concurrency": field(.int(1), &random), "timeout": field(.int(60), &random),
            "network": field(.bool(false), &random),
        ]
        for key in ["name", "description", "license", "requirements", "safety_checker"] where Bool.random(using: &random) {
            object[key] = field(.string(key == "name" ? "acme/m" : "x"), &random)
        }
        return .object(object)
    }

    /// Everything that reads a spec, on one spec (checked or not); none of it may trap.
    static func render(_ spec: ModelSpec, _ random: inout Generator) async {
        _ = OpenAPISchema.document(for: spec)
        _ = FormFields.fields(spec)
        _ = WebApp.exampleInput(spec)
        var form = WebForm()
        var values: [String: JSONValue] = [:]
        for input in spec.inputs {
            form.fields[input.name] = strings.randomElement(using: &random)!
            values[input.name] = anyValue(&random)
        }
        _ = FormFields.fields(spec, values: form.fields, errors: [:])
        _ = try? await FormFields.input(form, spec: spec) { _ in "https://x/v1/files/a" }
        _ = try? InputValidator.validate(values, spec: spec)
    }

    @Test("random and extreme specs through decode, check, parse, schema, form and validation: no trap, every refusal a diagnostic")
    func fuzz() async throws {
        let cases = Int(ProcessInfo.processInfo.environment["LATHE_FUZZ_CASES"] ?? "") ?? 3000
        let deadline = Date().addingTimeInterval(60)
        var random = Generator(state: 0x1A7E)
        var decoded = 0, accepted = 0, parsed = 0
        for _ in 0..<cases where Date() < deadline {
            let document = Self.spec(&random)
            let data = try JSON.canonical(document)
            // As a pushed config's spec: decoded (may fail), rendered unchecked, then checked.
            if let spec = try? JSONDecoder().decode(ModelSpec.self, from: data) {
                decoded += 1
                await Self.render(spec, &random)
                do {
                    let checked = try SpecParser.check(spec)
                    accepted += 1
                    await Self.render(checked, &random)
                    #expect(checked.inputs.allSatisfy { ($0.minimum ?? 0).exactInteger != nil && ($0.maximum ?? 0).exactInteger != nil })
                } catch let diagnostics as Diagnostics {
                    #expect(!diagnostics.items.isEmpty)
                }
            }
            // As lathe.yaml text (JSON is YAML, inputs keyed by name): what `lathe validate` and `lathe schema` read.
            var yaml = document.objectValue ?? [:]
            if case .array(let inputs)? = yaml["inputs"] {
                var byName: [String: JSONValue] = [:]
                for case .object(var input) in inputs {
                    let name = input.removeValue(forKey: "name")?.stringValue ?? "x"
                    byName[name] = .object(input)
                }
                yaml["inputs"] = .object(byName)
            }
            if let spec = try? SpecParser.parse(String(decoding: try JSON.canonical(JSONValue.object(yaml)), as: UTF8.self)) {
                parsed += 1
                await Self.render(spec, &random)
            }
        }
        print("spec fuzz: \(decoded) decoded, \(accepted) passed the check, \(parsed) parsed as lathe.yaml")
        #expect(decoded > 0 && accepted > 0 && parsed > 0, "the generator must reach every stage")
    }

    @Test("YAML aliases that expand exponentially are refused at once")
    func aliasBomb() throws {
        var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 { text += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n" }
        text += "predict: predict.py:Predictor\noutput: {type: string}\ninputs: {t: {type: object, default: {v: *a9}}}\n"
        let started = Date()
        #expect(throws: Diagnostics.self) { try SpecParser.parse(text) }
        #expect(Date().timeIntervalSince(started) < 2)
        do { _ = try SpecParser.parse(text) } catch let diagnostics as Diagnostics {
            #expect(diagnostics.description.contains("expands to more than"))
        }
    }
}
