/// Builds the OpenAPI document Cog produces for a predictor, so Replicate's clients and the web
/// form generator read Lathe versions exactly as they read Cog models.
public enum OpenAPISchema {
    public static let openAPIVersion = "3.0.2"

    /// The whole document: paths plus `components.schemas.Input`, `Output` and enum components.
    public static func document(for spec: ModelSpec, version: String = "lathe") -> JSONValue {
        var schemas: [String: JSONValue] = [
            "Output": output(spec.output),
            "Status": .object([
                "title": .string("Status"), "description": .string("An enumeration."), "type": .string("string"),
                "enum": .array(PredictionStatus.allCases.map { .string($0.rawValue) }),
            ]),
            "PredictionRequest": .object([
                "title": .string("PredictionRequest"), "type": .string("object"),
                "properties": .object([
                    "id": .object(["title": .string("Id"), "type": .string("string")]),
                    "input": .object(["$ref": .string("#/components/schemas/Input")]),
                    "webhook": .object(["title": .string("Webhook"), "type": .string("string"), "format": .string("uri")]),
                ]),
            ]),
            "PredictionResponse": .object([
                "title": .string("PredictionResponse"), "type": .string("object"),
                "properties": .object([
                    "id": .object(["title": .string("Id"), "type": .string("string")]),
                    "input": .object(["$ref": .string("#/components/schemas/Input")]),
                    "output": .object(["$ref": .string("#/components/schemas/Output")]),
                    "status": .object(["$ref": .string("#/components/schemas/Status")]),
                    "error": .object(["title": .string("Error"), "type": .string("string")]),
                    "logs": .object(["title": .string("Logs"), "type": .string("string"), "default": .string("")]),
                    "metrics": .object(["title": .string("Metrics"), "type": .string("object")]),
                    "created_at": .object(["title": .string("Created At"), "type": .string("string"), "format": .string("date-time")]),
                    "started_at": .object(["title": .string("Started At"), "type": .string("string"), "format": .string("date-time")]),
                    "completed_at": .object(["title": .string("Completed At"), "type": .string("string"), "format": .string("date-time")]),
                ]),
            ]),
        ]
        var enums: [String: JSONValue] = [:]
        schemas["Input"] = input(spec, enums: &enums)
        schemas.merge(enums) { current, _ in current }
        let ref = { (name: String) in JSONValue.object(["$ref": .string("#/components/schemas/\(name)")]) }
        let post = JSONValue.object([
            "summary": .string("Predict"),
            "operationId": .string("predict_predictions_post"),
            "requestBody": .object(["content": .object(["application/json": .object(["schema": ref("PredictionRequest")])])]),
            "responses": .object([
                "200": .object(["description": .string("Successful Response"),
                                "content": .object(["application/json": .object(["schema": ref("PredictionResponse")])])]),
                "422": .object(["description": .string("Validation Error")]),
            ]),
        ])
        return .object([
            "openapi": .string(openAPIVersion),
            "info": .object(["title": .string(spec.name ?? "Lathe model"), "version": .string(version),
                             "description": spec.description.map(JSONValue.string) ?? .string("")]),
            "paths": .object([
                "/predictions": .object(["post": post]),
                "/predictions/{prediction_id}/cancel": .object(["post": .object(["summary": .string("Cancel"),
                                                                                  "operationId": .string("cancel_predictions__prediction_id__cancel_post")])]),
                "/health-check": .object(["get": .object(["summary": .string("Healthcheck")])]),
            ]),
            "components": .object(["schemas": .object(schemas)]),
        ])
    }

    /// `components.schemas.Input`; choices become enum components added to `enums`.
    static func input(_ spec: ModelSpec, enums: inout [String: JSONValue]) -> JSONValue {
        var properties: [String: JSONValue] = [:]
        var required: [JSONValue] = []
        for (order, input) in spec.inputs.enumerated() {
            var property: [String: JSONValue] = ["title": .string(title(input.name)), "x-order": .int(order)]
            if let choices = input.choices {
                let enumName = input.name
                enums[enumName] = .object([
                    "title": .string(enumName), "description": .string("An enumeration."),
                    "type": .string(input.type == .string ? "string" : input.type == .integer ? "integer" : "number"),
                    "enum": .array(choices),
                ])
                property["allOf"] = .array([.object(["$ref": .string("#/components/schemas/\(enumName)")])])
            } else {
                property.merge(typeSchema(input.type, items: input.items)) { _, new in new }
            }
            if let value = input.description { property["description"] = .string(value) }
            if let value = input.default { property["default"] = value }
            if let value = input.minimum { property["minimum"] = number(value, input.type) }
            if let value = input.maximum { property["maximum"] = number(value, input.type) }
            let isArray = input.type == .array
            if let value = input.minLength { property[isArray ? "minItems" : "minLength"] = .int(value) }
            if let value = input.maxLength { property[isArray ? "maxItems" : "maxLength"] = .int(value) }
            if let value = input.pattern { property["pattern"] = .string(value) }
            if let value = input.accept { property["x-cog-accept"] = .string(value) }
            if input.deprecated == true { property["deprecated"] = .bool(true) }
            if input.nullable == true { property["nullable"] = .bool(true) }
            if input.isRequired { required.append(.string(input.name)) }
            properties[input.name] = .object(property)
        }
        var schema: [String: JSONValue] = ["title": .string("Input"), "type": .string("object"), "properties": .object(properties)]
        if !required.isEmpty { schema["required"] = .array(required) }
        return .object(schema)
    }

    /// `components.schemas.Output`, with Cog's iterator markers.
    public static func output(_ output: OutputSpec) -> JSONValue {
        var schema = outputPart(output)
        schema["title"] = .string("Output")
        if output.type == .iterator {
            schema["x-cog-array-type"] = .string("iterator")
            if output.concatenate == true { schema["x-cog-array-display"] = .string("concatenate") }
        }
        return .object(schema)
    }

    /// One part of the output as JSON Schema, nested parts included: an object's properties are
    /// titled as Cog titles them and required unless nullable, as Cog's `BaseModel` outputs are.
    static func outputPart(_ part: OutputSpec) -> [String: JSONValue] {
        var schema: [String: JSONValue]
        switch part.type {
        case .array, .iterator:
            schema = ["type": .string("array"), "items": .object(outputPart(part.items ?? OutputSpec(type: .string)))]
        case .object:
            schema = ["type": .string("object")]
            if let properties = part.properties {
                schema["properties"] = .object(properties.reduce(into: [:]) { result, entry in
                    var property = outputPart(entry.value)
                    property["title"] = .string(title(entry.key))
                    result[entry.key] = .object(property)
                })
                let required = properties.filter { $0.value.nullable != true }.keys.sorted()
                if !required.isEmpty { schema["required"] = .array(required.map(JSONValue.string)) }
            }
        default:
            schema = typeSchema(part.type, items: nil)
        }
        if let value = part.description { schema["description"] = .string(value) }
        if part.nullable == true { schema["nullable"] = .bool(true) }
        return schema
    }

    static func typeSchema(_ type: ValueType, items: ValueType?) -> [String: JSONValue] {
        switch type {
        case .string: ["type": .string("string")]
        case .integer: ["type": .string("integer")]
        case .number: ["type": .string("number")]
        case .boolean: ["type": .string("boolean")]
        case .file: ["type": .string("string"), "format": .string("uri")]
        case .secret: ["type": .string("string"), "format": .string("password"), "writeOnly": .bool(true), "x-cog-secret": .bool(true)]
        case .object: ["type": .string("object")]
        case .array, .iterator: ["type": .string("array"), "items": .object(typeSchema(items ?? .string, items: nil))]
        }
    }

    /// Cog titles are the parameter name with words capitalised: `top_k` → `Top K`.
    static func title(_ name: String) -> String {
        name.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " ")
    }

    private static func number(_ value: Double, _ type: ValueType) -> JSONValue {
        // Checked: a bound from a stranger's schema may be any double (1e300, NaN).
        if type == .integer || (value.rounded() == value && abs(value) < 1e15 && type != .number),
           let whole = value.exactInteger { return .int(whole) }
        return .number(value)
    }
}
