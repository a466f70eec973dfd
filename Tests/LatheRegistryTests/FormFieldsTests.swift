import Foundation
import LatheSpec
import Testing
@testable import LatheRegistry
@testable import LatheCore
@testable import LatheStore

@Suite("the run form generated from a spec")
struct FormFieldsTests {
    let spec: ModelSpec

    init() throws {
        let yaml = """
            predict: predict.py:Predictor
            inputs:
              prompt: {type: string, description: What to say}
              title: {type: string, max_length: 80, default: hi}
              steps: {type: integer, minimum: 1, maximum: 50, default: 10}
              seed: {type: integer}
              scale: {type: number, minimum: 0, maximum: 2, default: 1.5}
              loud: {type: boolean, default: true}
              style: {type: string, choices: [plain, fancy], default: fancy}
              photo: {type: file, accept: "image/*"}
              key: {type: secret}
              extra: {type: object, default: {}}
            output: {type: string}
            """
        spec = try SpecParser.parse(yaml)
    }

    func field(_ name: String, _ fields: [[String: Any]]) -> [String: Any] {
        fields.first { $0["name"] as? String == name }!
    }

    @Test("each type gets its control, with the schema's constraints")
    func controls() {
        let fields = FormFields.fields(spec)
        #expect(fields.map { $0["name"] as? String } == ["prompt", "title", "steps", "seed", "scale", "loud", "style", "photo", "key", "extra"])
        #expect(field("prompt", fields)["textarea"] as? Bool == true && field("prompt", fields)["required"] as? Bool == true)
        #expect(field("title", fields)["text"] as? Bool == true && field("title", fields)["maxlength"] as? Int == 80)
        #expect(field("steps", fields)["range"] as? Bool == true && field("steps", fields)["max"] as? String == "50")
        #expect(field("seed", fields)["number"] as? Bool == true && field("seed", fields)["step"] as? String == "1")
        #expect(field("scale", fields)["range"] as? Bool == true && field("scale", fields)["value"] as? String == "1.5")
        #expect(field("loud", fields)["checkbox"] as? Bool == true && field("loud", fields)["checked"] as? Bool == true)
        #expect(field("style", fields)["select"] as? Bool == true)
        #expect(field("photo", fields)["file"] as? Bool == true && field("photo", fields)["accept"] as? String == "image/*")
        #expect(field("key", fields)["password"] as? Bool == true)
        #expect(field("extra", fields)["json"] as? Bool == true)
    }

    @Test("submitted text becomes typed input; what does not parse reaches the validator as text")
    func input() async throws {
        var form = WebForm()
        form.fields = ["prompt": "hello", "title": "", "steps": "7", "seed": "abc", "scale": "0.25", "style": "plain", "extra": "{\"a\": 1}"]
        form.files["photo"] = UploadedFile(filename: "p.png", contentType: "image/png", file: URL(fileURLWithPath: "/nonexistent/p.png"), size: 3)
        let input = try await FormFields.input(form, spec: spec) { file in "https://registry.example/v1/files/\(file.filename)" }
        #expect(input["prompt"] == .string("hello"))
        #expect(input["title"] == .string(""))
        #expect(input["steps"] == .int(7))
        #expect(input["seed"] == .string("abc"))
        #expect(input["scale"] == .number(0.25))
        #expect(input["loud"] == .bool(false))
        #expect(input["style"] == .string("plain"))
        #expect(input["photo"] == .string("https://registry.example/v1/files/p.png"))
        #expect(input["extra"] == .object(["a": .int(1)]))
        #expect(input["key"] == nil)
        #expect(throws: InputErrors.self) { try InputValidator.validate(input, spec: spec) }
    }
}
