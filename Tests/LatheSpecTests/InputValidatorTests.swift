import Testing
@testable import LatheSpec

@Suite("prediction input validation")
struct InputValidatorTests {
    let spec = try! SpecParser.parse("""
    predict: p.py:f
    inputs:
      text: {type: string, min_length: 1, pattern: '^[a-z ]+$'}
      top_k: {type: integer, default: 1, minimum: 1, maximum: 3}
      mode: {type: string, choices: [fast, accurate], default: fast}
      ratio: {type: number, default: 0.5}
      tags: {type: array, items: string, max_length: 2, nullable: true}
    output: string
    """)

    @Test("valid inputs get defaults filled in and numbers normalised")
    func valid() throws {
        let values = try InputValidator.validate(["text": .string("hi"), "ratio": .int(2)], spec: spec)
        #expect(values == ["text": .string("hi"), "top_k": .int(1), "mode": .string("fast"), "ratio": .number(2), "tags": .null])
    }

    @Test("one message per bad field, before anything runs")
    func perFieldErrors() {
        do {
            _ = try InputValidator.validate([
                "top_k": .int(7), "mode": .string("slow"), "ratio": .string("x"), "tags": .array([.string("a"), .string("b"), .string("c")]),
                "txt": .string("hi"),
            ], spec: spec)
            Issue.record("expected errors")
        } catch {
            #expect(error.fields.map(\.description) == [
                "input \"txt\": is not an input of this model; did you mean \"text\"? (inputs: text, top_k, mode, ratio, tags)",
                "input \"text\": is required",
                "input \"top_k\": is above maximum 3",
                "input \"mode\": must be one of [\"fast\", \"accurate\"]",
                "input \"ratio\": is \"x\", not a number",
                "input \"tags\": has 3 items, more than max_length 2",
            ])
        }
    }

    @Test("patterns and lengths on strings")
    func strings() {
        #expect(throws: InputErrors.self) { try InputValidator.validate(["text": .string("ABC")], spec: spec) }
        #expect(throws: InputErrors.self) { try InputValidator.validate(["text": .string("")], spec: spec) }
    }

    @Test("a backtracking pattern is stopped at ICU's step limit: the input is refused with a sentence, at once")
    func catastrophicPattern() throws {
        let hostile = try SpecParser.parse("predict: p.py:f\ninputs:\n  text: {type: string, pattern: '^(a+)+$'}\noutput: string\n")
        // 2^40 backtracking steps without a limit: hours of one core for one request.
        let text = String(repeating: "a", count: 40) + "b"
        let clock = ContinuousClock()
        let started = clock.now
        do {
            _ = try InputValidator.validate(["text": .string(text)], spec: hostile)
            Issue.record("expected the input to be refused")
        } catch {
            #expect(error.fields.first?.message.contains("could not be checked against pattern ^(a+)+$ within Lathe's limit") == true,
                    "\(error.fields)")
        }
        #expect(clock.now - started < .seconds(2))
        // The same pattern still decides plain values.
        #expect(PatternMatch.find("^(a+)+$", in: "aaaa") == .matched)
        #expect(PatternMatch.find("^(a+)+$", in: "aaab") == .notMatched)
        #expect(PatternMatch.find("[a-z", in: "a") == .notDecided)
        // Unicode beyond the BMP, as NSRegularExpression sees it (UTF-16).
        #expect(PatternMatch.find("^\\p{So}+$", in: "🙂🙂") == .matched)
    }
}
