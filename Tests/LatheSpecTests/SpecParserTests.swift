import Foundation
import Testing
@testable import LatheSpec

/// Parses `yaml` and returns the rendered diagnostics (empty when it parsed).
func diagnostics(_ yaml: String) -> [String] {
    do {
        _ = try SpecParser.parse(yaml)
        return []
    } catch let error as Diagnostics {
        return error.items.map(\.description)
    } catch {
        return ["unexpected: \(error)"]
    }
}

@Suite("lathe.yaml parsing")
struct SpecParserTests {
    @Test("a full spec parses into every field")
    func fullSpec() throws {
        let spec = try SpecParser.parse("""
        name: acme/sentiment
        description: Sentiment of English text
        license: MIT
        python: "3.11"
        python_packages: [numpy>=1.26]
        predict: predict.py:Predictor
        inputs:
          text:   {type: string, description: Text to classify, min_length: 1}
          top_k:  {type: integer, default: 1, minimum: 1, maximum: 3}
          image:  {type: file, accept: "image/*"}
          mode:   {type: string, choices: [fast, accurate], default: fast}
          token:  {type: secret}
          ratio:  {type: number, default: 2}
          tags:   {type: array, items: string, max_length: 3, nullable: true}
          extra:  {type: object, default: {a: 1}}
        output:
          type: object
          properties: {label: {type: string}, score: {type: number}}
        weights:
          - path: weights/model.npz
            sha256: 9f2c000000000000000000000000000000000000000000000000000000000000
        concurrency: 2
        timeout: 10m
        network: false
        """)
        #expect(spec.name == "acme/sentiment")
        #expect(spec.pythonPackages == ["numpy>=1.26"])
        #expect(spec.predict == EntryPoint(file: "predict.py", symbol: "Predictor"))
        #expect(spec.inputs.map(\.name) == ["text", "top_k", "image", "mode", "token", "ratio", "tags", "extra"])
        #expect(spec.input(named: "top_k")?.maximum == 3)
        #expect(spec.input(named: "mode")?.choices == [.string("fast"), .string("accurate")])
        #expect(spec.input(named: "ratio")?.default == .number(2))
        #expect(spec.input(named: "tags")?.items == .string)
        #expect(spec.input(named: "tags")?.isRequired == false)
        #expect(spec.input(named: "text")?.isRequired == true)
        #expect(spec.input(named: "text")?.location == SourceLocation(file: "lathe.yaml", line: 8, column: 3))
        #expect(spec.output.properties == ["label": OutputSpec(type: .string), "score": OutputSpec(type: .number)])
        #expect(spec.weights.first?.sha256?.hasPrefix("9f2c") == true)
        #expect(spec.concurrency == 2)
        #expect(spec.timeout == 600)
    }

    @Test("outputs nest: a list of detections with a box each, nullable and described at every level")
    func nestedOutput() throws {
        let text = """
        predict: p.py:f
        output:
          type: array
          description: What was found
          items:
            type: object
            properties:
              label: {type: string, description: Class name}
              score: number
              box: {type: array, items: integer, description: "x, y, w, h"}
              mask: {type: file, nullable: true}
              parts: {type: array, items: {type: object, properties: {name: string}}}
        """
        let spec = try SpecParser.parse(text)
        let detection = try #require(spec.output.items)
        #expect(spec.output.type == .array && spec.output.description == "What was found")
        #expect(detection.type == .object && detection.properties?.keys.sorted() == ["box", "label", "mask", "parts", "score"])
        #expect(detection.properties?["box"]?.items == OutputSpec(type: .integer))
        #expect(detection.properties?["mask"]?.nullable == true)
        #expect(detection.properties?["parts"]?.items?.properties?["name"] == OutputSpec(type: .string))
        // The served schema nests the same way, as JSON Schema does.
        let schema = OpenAPISchema.output(spec.output)
        let items = schema.objectValue?["items"]?.objectValue
        #expect(items?["type"] == .string("object"))
        #expect(items?["required"] == .array(["box", "label", "parts", "score"].map(JSONValue.string)))
        let box = items?["properties"]?.objectValue?["box"]?.objectValue
        #expect(box?["items"] == .object(["type": .string("integer")]) && box?["title"] == .string("Box"))
        #expect(items?["properties"]?.objectValue?["mask"]?.objectValue?["nullable"] == .bool(true))
        // A pushed config carries it, and the registry's re-parse (SpecParser.check) keeps it.
        let config = try JSONEncoder().encode(spec)
        let decoded = try JSONDecoder().decode(ModelSpec.self, from: config)
        #expect(decoded.output == spec.output)
        #expect(try SpecParser.check(decoded).output == spec.output)
    }

    @Test("a plain output part is written as its type's name, as before outputs nested, so existing versions keep their digests")
    func outputWireCompatibility() throws {
        let old = #"{"properties":{"label":"string","score":"number"},"type":"object"}"#
        let decoded = try JSONDecoder().decode(OutputSpec.self, from: Data(old.utf8))
        #expect(decoded.properties == ["label": OutputSpec(type: .string), "score": OutputSpec(type: .number)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let written = String(decoding: try encoder.encode(decoded), as: UTF8.self)
        #expect(written == old, "\(written)")
        let iterator = #"{"concatenate":true,"items":"string","type":"iterator"}"#
        #expect(String(decoding: try encoder.encode(try JSONDecoder().decode(OutputSpec.self, from: Data(iterator.utf8))), as: UTF8.self) == iterator)
    }

    @Test("an output nesting deeper than the limit is refused with a sentence")
    func outputDepth() throws {
        var part = "string"
        for _ in 0..<SpecParser.Limits.outputDepth { part = "{type: array, items: \(part)}" }
        #expect(throws: Diagnostics.self) { try SpecParser.parse("predict: p.py:f\noutput: \(part)\n") }
        do { _ = try SpecParser.parse("predict: p.py:f\noutput: \(part)\n") } catch {
            #expect("\(error)".contains("nests deeper than 8 levels"), "\(error)")
        }
        #expect(throws: Diagnostics.self) { try SpecParser.parse("predict: p.py:f\noutput: {type: array, items: {type: iterator, items: string}}\n") }
    }

    @Test("shorthand types and defaults")
    func shorthand() throws {
        let spec = try SpecParser.parse("predict: p.py:f\ninputs:\n  text: string\noutput: string\n")
        #expect(spec.inputs.first?.type == .string)
        #expect(spec.output.type == .string)
        #expect(spec.timeout == 1800)
        #expect(spec.python.description == "3.11")
    }

    // MARK: - One test per kind of mistake, each with its exact place and words.

    @Test("unknown key at the top level suggests the right one")
    func unknownRootKey() {
        #expect(diagnostics("predict: p.py:f\ndescripton: x\noutput: string\n") == [
            "lathe.yaml:2:1: unknown key \"descripton\" at the top level — did you mean \"description\"?",
        ])
    }

    @Test("unknown key inside an input")
    func unknownInputKey() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  text: {type: string, min_lenght: 1}\noutput: string\n") == [
            "lathe.yaml:3:24: unknown key \"min_lenght\" in input \"text\" — did you mean \"min_length\"?",
        ])
    }

    @Test("wrong type name points at the Lathe name")
    func wrongType() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  top_k: {type: int}\noutput: string\n") == [
            "lathe.yaml:3:17: input \"top_k\" has unknown type \"int\" — write `type: integer`",
        ])
    }

    @Test("default of the wrong type")
    func defaultWrongType() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  n: {type: integer, default: \"abc\"}\noutput: string\n") == [
            "lathe.yaml:3:31: default of input \"n\" is \"abc\", not an integer — write a value of type integer",
        ])
    }

    @Test("default outside its range")
    func defaultOutOfRange() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  k: {type: integer, default: 5, minimum: 1, maximum: 3}\noutput: string\n") == [
            "lathe.yaml:3:31: default 5 of input \"k\" is above maximum 3 — change the default or the constraint",
        ])
    }

    @Test("default not among the choices")
    func defaultNotAChoice() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  mode: {type: string, choices: [fast, accurate], default: slow}\noutput: string\n") == [
            "lathe.yaml:3:60: default \"slow\" of input \"mode\" is not one of its choices [\"fast\", \"accurate\"] — use one of the choices or add it to choices",
        ])
    }

    @Test("invalid regular expression")
    func badPattern() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  code: {type: string, pattern: \"[a-\"}\noutput: string\n") == [
            "lathe.yaml:3:33: pattern \"[a-\" of input \"code\" is not a valid regular expression — fix the expression, and quote it in single quotes so YAML keeps backslashes",
        ])
    }

    @Test("malformed YAML names the line and where the construct began")
    func malformedYAML() {
        #expect(diagnostics("predict: p.py:P\ninputs:\n  a: {type: string\n  b: 1\n") == [
            "lathe.yaml:4:4: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at 3:6) — check indentation and quoting there (strings holding ':' or '#' need quotes)",
        ])
    }

    @Test("missing predict")
    func missingPredict() {
        #expect(diagnostics("inputs: {}\noutput: {type: string}\n") == [
            "lathe.yaml:1:1: missing predict: — add `predict: predict.py:Predictor`",
        ])
    }

    @Test("predict not of the form file.py:Name")
    func badPredict() {
        #expect(diagnostics("predict: predict.Predictor\noutput: string\n") == [
            "lathe.yaml:1:10: predict: must be file.py:Name — write for example `predict: predict.py:Predictor`",
        ])
    }

    @Test("array without items")
    func arrayWithoutItems() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  tags: {type: array}\noutput: string\n") == [
            "lathe.yaml:3:16: input \"tags\" is an array without items: — add `items: string` (or another type)",
        ])
    }

    @Test("weights outside the project and malformed pins")
    func weightsProblems() {
        #expect(diagnostics("predict: p.py:f\noutput: string\nweights:\n  - path: ../outside.bin\n  - path: w.bin\n    sha256: abc\n") == [
            "lathe.yaml:4:5: weights path \"../outside.bin\" is outside the project — use a path relative to the folder that holds lathe.yaml",
            "lathe.yaml:6:13: sha256 \"abc\" is not 64 lowercase hex digits — paste the output of `sha256sum w.bin`, or remove the pin",
        ])
    }

    @Test("constraint that does not apply to the type")
    func misplacedConstraint() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  t: {type: string, minimum: 1}\noutput: string\n") == [
            "lathe.yaml:3:30: minimum applies to integer and number inputs, but input \"t\" is string — use min_length/max_length for strings",
        ])
    }

    @Test("a file input cannot have a default")
    func fileDefault() {
        #expect(diagnostics("predict: p.py:f\ninputs:\n  f: {type: file, default: x.png}\noutput: string\n") == [
            "lathe.yaml:3:28: input \"f\" is a file and cannot have a default — remove default, or write `nullable: true` to make it optional",
        ])
    }

    @Test("concatenate only on iterators of strings")
    func concatenate() {
        #expect(diagnostics("predict: p.py:f\noutput: {type: string, concatenate: true}\n") == [
            "lathe.yaml:2:37: concatenate applies to iterators of strings — set `type: iterator` and `items: string`, or remove concatenate",
        ])
    }

    @Test("every mistake is reported at once")
    func severalMistakes() {
        #expect(diagnostics("predict: p.py:f\nfoo: 1\nbar: 2\noutput: {type: strin}\n").count == 3)
    }
}
