import Foundation
import LatheSpec
import Testing

@Suite("fast JSON reader")
struct JSONValueParsingTests {
    /// What Foundation's decoder makes of `text` (nil when it refuses it).
    static func foundation(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test("reads what Foundation's decoder reads, as the same values, and refuses what it refuses", arguments: [
        "null", "true", "false", "0", "-0", "1", "-1", "1.0", "-0.0", "2.5", "1e3", "1E+2", "1.5e-3", "9223372036854775807",
        "9223372036854775808", "-9223372036854775808", "123456789012345678901234567890", "1e300", "0.1", "3.141592653589793",
        #""""#, #""plain""#, #""quote \" backslash \\ slash \/ \b\f\n\r\t""#, #""\u00e9\u4e2d\ud83c\udf89""#, #""é 🎉 中""#,
        "[]", "{}", " [ 1 , [ 2 , [ ] ] , { } ] ", #"{"a":{"b":[null,true,"x",{"c":-1.25}]},"d":[]}"#, #"{"a":1,"a":2}"#,
        // Refused by both.
        "", " ", "nul", "tru", "01", "-", "1.", ".5", "1e", "+1", "[,1]", "{\"a\"}", "{\"a\":}", "{a:1}", "[1 2]",
        "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"",
        "[1] 2", "{}x", "NaN", "Infinity", "1e999",
    ])
    func matchesFoundation(_ text: String) {
        #expect(JSONValue(parsing: text) == Self.foundation(text), "\(text)")
    }

    @Test("trailing commas, which Foundation lets through, are not JSON (RFC 8259)")
    func trailingCommas() {
        for text in ["[1,]", #"{"a":1,}"#] {
            #expect(Self.foundation(text) != nil)
            #expect(JSONValue(parsing: text) == nil, "\(text)")
        }
    }

    @Test("random documents read back as Foundation reads them")
    func randomDocuments() {
        var generator = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2: return .int(Int.random(in: Int.min...Int.max, using: &generator) >> Int.random(in: 0..<63, using: &generator))
            case 3: return .number(Double.random(in: -1e6...1e6, using: &generator))
            case 4:
                let scalars = (0..<Int.random(in: 0..<12, using: &generator)).compactMap { _ in
                    Unicode.Scalar([0x22, 0x5C, 0x0A, 0x01, 0x41, 0xE9, 0x4E2D, 0x1F389].randomElement(using: &generator)!)
                }
                return .string(String(String.UnicodeScalarView(scalars)))
            case 5: return .array((0..<Int.random(in: 0..<5, using: &generator)).map { _ in random(depth + 1) })
            default:
                return .object(Dictionary((0..<Int.random(in: 0..<5, using: &generator)).map { ("k\($0)", random(depth + 1)) }) { a, _ in a })
            }
        }
        for _ in 0..<2000 {
            let text = String(decoding: random(0).serialized(), as: UTF8.self)
            #expect(JSONValue(parsing: text) == Self.foundation(text), "\(text)")
        }
    }

    @Test("nesting deeper than 512 is refused, not a stack overflow")
    func depth() {
        #expect(JSONValue(parsing: String(repeating: "[", count: 100_000)) == nil)
        #expect(JSONValue(parsing: String(repeating: "[", count: 500) + String(repeating: "]", count: 500)) != nil)
        #expect(JSONValue(parsing: String(repeating: "[", count: 600) + String(repeating: "]", count: 600)) == nil)
    }
}
