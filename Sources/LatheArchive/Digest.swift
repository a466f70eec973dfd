import Crypto
import Foundation

/// A content digest in OCI form, `sha256:<64 hex>`.
public struct Digest: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    /// The 64 lowercase hex digits.
    public var hex: String

    public init(hex: String) {
        self.hex = hex
    }

    /// Parses `sha256:<hex>` (or bare hex); nil for anything else.
    public init?(parsing text: String) {
        let hex = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return nil }
        self.hex = hex
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let digest = Digest(parsing: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid digest \(text)"))
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public var description: String { "sha256:" + hex }
    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.hex < rhs.hex }

    /// The digest of bytes in memory.
    public static func of(_ data: Data) -> Digest {
        Digest(SHA256.hash(data: data))
    }

    init(_ digest: SHA256.Digest) {
        self.hex = ByteEncoding.hex(digest)
    }
}

/// A streaming SHA-256 that also counts bytes.
public struct DigestWriter: Sendable {
    private var hasher = SHA256()
    public private(set) var count: Int64 = 0

    public init() {}

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: buffer)
        count += Int64(buffer.count)
    }

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    public func finalize() -> Digest {
        Digest(hasher.finalize())
    }
}
