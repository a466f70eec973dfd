import Foundation
import LatheSpec
import LatheTestSupport
import Testing
@testable import LatheRegistry
@testable import LatheCore
@testable import LatheStore

/// Issue 19: every field of a spec, as a pushed config's JSON and as `lathe.yaml` text, with
/// extreme values and wrong types, goes through everything that reads a spec — the config
/// decoder and its check, the YAML parser, the OpenAPI schema (`lathe schema`, the versions
/// API), the run form, the API snippet and the input validator — and nothing may trap, checked
/// or not (versions stored before the check existed are rendered too). Seeded and bounded:
/// `LATHE_FUZZ_CASES` (default 3000) cases or 60 s, whichever comes first.
@Suite("fuzzing the spec schema through every reader")
struct SpecFuzzTests {
    /// Everything that reads a spec, on one spec (checked or not); none of it may trap.
    static func render(_ spec: ModelSpec, _ random: inout SpecFuzzer.Generator) async {
        _ = OpenAPISchema.document(for: spec)
        _ = FormFields.fields(spec)
        _ = WebApp.exampleInput(spec)
        var form = WebForm()
        var values: [String: JSONValue] = [:]
        for input in spec.inputs {
            form.fields[input.name] = SpecFuzzer.strings.randomElement(using: &random)!
            values[input.name] = SpecFuzzer.anyValue(&random)
        }
        _ = FormFields.fields(spec, values: form.fields, errors: [:])
        _ = try? await FormFields.input(form, spec: spec) { _ in "https://x/v1/files/a" }
        _ = try? InputValidator.validate(values, spec: spec)
    }

    @Test("random and extreme specs through decode, check, parse, schema, form and validation: no trap, every refusal a diagnostic")
    func fuzz() async throws {
        let cases = Int(ProcessInfo.processInfo.environment["LATHE_FUZZ_CASES"] ?? "") ?? 3000
        let deadline = Date().addingTimeInterval(60)
        var random = SpecFuzzer.Generator(state: 0x1A7E)
        var decoded = 0, accepted = 0, parsed = 0
        for _ in 0..<cases where Date() < deadline {
            let document = SpecFuzzer.spec(&random)
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
