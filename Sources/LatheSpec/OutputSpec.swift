/// What a model returns: a type, with the element type of an `array` or `iterator` and the
/// fields of an `object`, each again an ``OutputSpec`` (so a list of detections
/// `[{label, score, box: [x, y, w, h]}]` is expressible), as JSON Schema and Cog's `BaseModel`
/// outputs nest.
///
/// On the wire (a version's config) a part that is only a type is written as its name
/// (`"items": "string"`), as before nesting existed, so the configs of existing models, and the
/// digests of their versions, do not change.
public struct OutputSpec: Sendable, Hashable, Codable {
    public var type: ValueType
    /// Named fields of an `object`, each with its own type.
    public var properties: [String: OutputSpec]?
    /// Iterator of strings meant to be shown joined (streamed text); top level only.
    public var concatenate: Bool?
    public var description: String?
    /// Whether the value may be `null`.
    public var nullable: Bool?
    // Stored in an array because a struct cannot hold an optional of itself.
    private var itemStorage: [OutputSpec]

    public init(type: ValueType, items: OutputSpec? = nil) {
        self.type = type
        self.itemStorage = items.map { [$0] } ?? []
    }

    /// The element type of an `array` or `iterator`.
    public var items: OutputSpec? {
        get { itemStorage.first }
        set { itemStorage = newValue.map { [$0] } ?? [] }
    }

    /// Whether this part says nothing but its type (written as the type's name).
    var isPlain: Bool { properties == nil && concatenate == nil && description == nil && nullable == nil && itemStorage.isEmpty }

    /// How deep parts nest: 1 for a plain type.
    public var depth: Int {
        1 + max(items?.depth ?? 0, properties?.values.map(\.depth).max() ?? 0)
    }

    enum CodingKeys: String, CodingKey { case type, items, properties, concatenate, description, nullable }

    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let type = try? single.decode(ValueType.self) {
            self.init(type: type)
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(type: try container.decode(ValueType.self, forKey: .type), items: try container.decodeIfPresent(OutputSpec.self, forKey: .items))
        properties = try container.decodeIfPresent([String: OutputSpec].self, forKey: .properties)
        concatenate = try container.decodeIfPresent(Bool.self, forKey: .concatenate)
        description = try container.decodeIfPresent(String.self, forKey: .description)
        nullable = try container.decodeIfPresent(Bool.self, forKey: .nullable)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(type, forKey: .type)
        try items.map { try $0.encodePart(to: container.superEncoder(forKey: .items)) }
        if let properties {
            var nested = container.nestedContainer(keyedBy: AnyKey.self, forKey: .properties)
            for (name, property) in properties { try property.encodePart(to: nested.superEncoder(forKey: AnyKey(name))) }
        }
        try container.encodeIfPresent(concatenate, forKey: .concatenate)
        try container.encodeIfPresent(description, forKey: .description)
        try container.encodeIfPresent(nullable, forKey: .nullable)
    }

    /// A nested part: its type's name when that is all it says.
    private func encodePart(to encoder: any Encoder) throws {
        if isPlain {
            var single = encoder.singleValueContainer()
            try single.encode(type)
        } else {
            try encode(to: encoder)
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
