import CSHA256State
import Foundation

/// A running SHA-256 whose state survives the process: it encodes to a few hundred bytes and
/// decodes into a hasher that continues where the first stopped. An upload whose chunks reach
/// different replicas keeps one with its parts, so its digest is known (and checked) before its
/// bytes are assembled under that digest.
public struct ResumableDigest: Codable, Sendable, Equatable {
    private var context = lathe_sha256_ctx()
    /// Bytes hashed so far.
    public private(set) var count: Int64 = 0

    public init() {
        _ = CCryptoBoringSSL_SHA256_Init(&context)
    }

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        _ = CCryptoBoringSSL_SHA256_Update(&context, base, buffer.count)
        count += Int64(buffer.count)
    }

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// The digest of everything hashed so far (the hasher itself can go on).
    public func finalize() -> Digest {
        var copy = context
        var bytes = [UInt8](repeating: 0, count: 32)
        _ = CCryptoBoringSSL_SHA256_Final(&bytes, &copy)
        return Digest(parsing: "sha256:" + ByteEncoding.hex(bytes))!
    }

    private enum CodingKeys: String, CodingKey { case count, state }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        count = try container.decode(Int64.self, forKey: .count)
        let state = try container.decode(Data.self, forKey: .state)
        guard state.count == MemoryLayout<lathe_sha256_ctx>.size, count >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .state, in: container, debugDescription: "not a saved SHA-256 state")
        }
        withUnsafeMutableBytes(of: &context) { $0.copyBytes(from: state) }
        // The partial block's fill must be what the byte count says, or the state is not one we saved.
        guard Int64(context.num) == count % 64, context.md_len == 32 else {
            throw DecodingError.dataCorruptedError(forKey: .state, in: container, debugDescription: "a saved SHA-256 state that does not match its byte count")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(count, forKey: .count)
        try container.encode(withUnsafeBytes(of: context) { Data($0) }, forKey: .state)
    }

    public static func == (lhs: ResumableDigest, rhs: ResumableDigest) -> Bool {
        lhs.count == rhs.count && withUnsafeBytes(of: lhs.context) { l in withUnsafeBytes(of: rhs.context) { r in l.elementsEqual(r) } }
    }
}
