import Testing
@testable import LatheSpec

@Suite("Cog-compatible OpenAPI")
struct OpenAPISchemaTests {
    @Test("inputs map to Cog's Input schema: x-order, enums via allOf, uri files, secrets")
    func input() throws {
        let spec = try SpecParser.parse("""
        predict: p.py:f
        inputs:
          prompt: {type: string, description: Text prompt}
          steps: {type: integer, default: 50, minimum: 1, maximum: 100}
          scheduler: {type: string, default: ddim, choices: [ddim, euler]}
          image: {type: file, accept: "image/*"}
          token: {type: secret}
        output: {type: iterator, items: string, concatenate: true}
        """)
        let document = OpenAPISchema.document(for: spec)
        let schemas = try #require(document["components"]?["schemas"])
        let input = try #require(schemas["Input"])
        #expect(input["required"] == .array([.string("prompt"), .string("image"), .string("token")]))
        #expect(input["properties"]?["prompt"] == .object([
            "title": .string("Prompt"), "type": .string("string"), "description": .string("Text prompt"), "x-order": .int(0),
        ]))
        #expect(input["properties"]?["steps"]?["minimum"] == .int(1))
        #expect(input["properties"]?["scheduler"]?["allOf"] == .array([.object(["$ref": .string("#/components/schemas/scheduler")])]))
        #expect(schemas["scheduler"]?["enum"] == .array([.string("ddim"), .string("euler")]))
        #expect(input["properties"]?["image"]?["format"] == .string("uri"))
        #expect(input["properties"]?["image"]?["x-cog-accept"] == .string("image/*"))
        #expect(input["properties"]?["token"]?["x-cog-secret"] == .bool(true))
        #expect(schemas["Output"] == .object([
            "title": .string("Output"), "type": .string("array"), "items": .object(["type": .string("string")]),
            "x-cog-array-type": .string("iterator"), "x-cog-array-display": .string("concatenate"),
        ]))
        #expect(document["openapi"] == .string("3.0.2"))
    }
}
