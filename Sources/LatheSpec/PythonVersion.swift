/// A Python 3 version as `lathe.yaml` writes it (`"3.11"`, `"3.11.4"`): numbers only, so the
/// value can never name a program or a path, whatever a pushed config holds (the host looks up
/// `python3.N` among the operator's interpreters by it).
public struct PythonVersion: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    public let minor: Int
    public let patch: Int?

    /// Parses `3.N` or `3.N.M` (each part at most three digits); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, parts[0] == "3",
              parts.dropFirst().allSatisfy({ (1...3).contains($0.utf8.count) && $0.utf8.allSatisfy { (48...57).contains($0) } }),
              let minor = Int(parts[1]) else { return nil }
        self.minor = minor
        self.patch = parts.count == 3 ? Int(parts[2]) : nil
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = PythonVersion(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "python \"\(text.prefix(40))\" is not a Python 3 version such as \"3.11\""))
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public var description: String { patch.map { "3.\(minor).\($0)" } ?? "3.\(minor)" }

    /// `3.N`, the part interpreters are named by (`python3.11`).
    public var majorMinor: String { "3.\(minor)" }

    public static func < (lhs: PythonVersion, rhs: PythonVersion) -> Bool {
        (lhs.minor, lhs.patch ?? -1) < (rhs.minor, rhs.patch ?? -1)
    }
}
