import Foundation
import LatheSpec
import Testing

@Suite("fast JSON writer")
struct JSONValueSerializationTests {
    @Test("reads back as the same value, escapes what JSON needs, sorts keys")
    func roundTrip() throws {
        let value: JSONValue = .object([
            "z": .array([.null, .bool(true), .bool(false), .int(-3), .number(0.25), .number(1e-7)]),
            "a": .string("quote \" backslash \\ newline \n tab \t bell \u{07} slash / é 🎉"),
            "m": .object(["nested": .object([:]), "list": .array([])]),
        ])
        let bytes = value.serialized()
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) == value)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix(#"{"a":"quote \" backslash \\ newline \n tab \t bell \u0007 slash / é 🎉","m":"#))
        #expect(JSONValue.number(.nan).serialized() == Array("null".utf8))
    }

    @Test("decoding keeps booleans, integers, numbers and strings apart")
    func decodingKinds() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(#"[true, 1, 1.0, 2.5, "1", null, {"a": [false, "x"]}, 1e3]"#.utf8))
        // Foundation's decoder reads a whole-valued `1.0` as an integer; number inputs accept both.
        #expect(value == .array([.bool(true), .int(1), .int(1), .number(2.5), .string("1"), .null,
                                 .object(["a": .array([.bool(false), .string("x")])]), value.arrayValue![7]]))
        #expect(value.arrayValue![7].doubleValue == 1000)
    }
}
