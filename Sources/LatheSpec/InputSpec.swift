/// One declared input of a model, in the order the form shows it.
public struct InputSpec: Sendable, Hashable, Codable {
    public var name: String
    public var type: ValueType
    /// Element type of an `array` input.
    public var items: ValueType?
    public var description: String?
    public var `default`: JSONValue?
    public var minimum: Double?
    public var maximum: Double?
    public var minLength: Int?
    public var maxLength: Int?
    public var pattern: String?
    public var choices: [JSONValue]?
    public var accept: String?
    public var deprecated: Bool?
    public var nullable: Bool?
    /// Where the input is declared in `lathe.yaml` (not part of the identity).
    public var location: SourceLocation?

    public init(name: String, type: ValueType) {
        self.name = name
        self.type = type
    }

    /// An input is required when it has no default and may not be null.
    public var isRequired: Bool { `default` == nil && nullable != true }

    enum CodingKeys: String, CodingKey {
        case name, type, items, description, `default`, minimum, maximum
        case minLength = "min_length", maxLength = "max_length"
        case pattern, choices, accept, deprecated, nullable
    }
}

/// A weights file or directory that is packed as raw blobs, never compressed.
public struct WeightsSpec: Sendable, Hashable, Codable {
    public var path: String
    /// Optional pin: the build fails when the file's sha256 differs.
    public var sha256: String?
    public var location: SourceLocation?

    public init(path: String, sha256: String? = nil) {
        self.path = path
        self.sha256 = sha256
    }

    enum CodingKeys: String, CodingKey { case path, sha256 }
}

/// `file.py:Symbol`, the entry point a runner imports.
public struct EntryPoint: Sendable, Hashable, Codable, CustomStringConvertible {
    public var file: String
    public var symbol: String

    public init(file: String, symbol: String) {
        self.file = file
        self.symbol = symbol
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = EntryPoint(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not file.py:Name"))
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Parses `predict.py:Predictor`; nil when the text is not of that form.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].hasSuffix(".py"), !parts[1].isEmpty,
              parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
              !(parts[1].first?.isNumber ?? true)
        else { return nil }
        self.init(file: String(parts[0]), symbol: String(parts[1]))
    }

    public var description: String { "\(file):\(symbol)" }
}
