import Crypto
import Foundation
import LatheArchive

/// AWS Signature Version 4 for S3 requests: the `Authorization` header for a request, or a
/// presigned URL. A pure function of the request, the credentials and the time, tested against
/// AWS's published examples.
public struct SigV4: Sendable {
    /// An access key and its secret (the secret is never logged or printed).
    public struct Credentials: Sendable, CustomStringConvertible {
        public var accessKey: String
        public var secretKey: String
        public init(accessKey: String, secretKey: String) {
            self.accessKey = accessKey
            self.secretKey = secretKey
        }
        public var description: String { "access key \(accessKey)" }
    }

    /// The payload hash S3 accepts for bodies it should not check (streamed uploads).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public var credentials: Credentials
    public var region: String
    public var service = "s3"

    public init(credentials: Credentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    /// The headers to add to a request (`x-amz-date`, `x-amz-content-sha256`, `Authorization`).
    /// `headers` are those the request sends that should be signed (`host` is added from `url`).
    public func sign(method: String, url: URL, headers: [String: String] = [:], payloadHash: String, date: Date = Date()) -> [String: String] {
        let (stamp, day) = Self.timestamps(date)
        var signed = headers.reduce(into: [String: String]()) { $0[$1.key.lowercased()] = $1.value.trimmingCharacters(in: .whitespaces) }
        signed["host"] = Self.host(url)
        signed["x-amz-date"] = stamp
        signed["x-amz-content-sha256"] = payloadHash
        let names = signed.keys.sorted()
        let canonical = [method, Self.canonicalPath(url), Self.canonicalQuery(Self.queryItems(url)),
                         names.map { "\($0):\(signed[$0]!)\n" }.joined(), names.joined(separator: ";"), payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let signature = self.signature(canonical, stamp: stamp, day: day, scope: scope)
        return ["x-amz-date": stamp, "x-amz-content-sha256": payloadHash,
                "Authorization": "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope),SignedHeaders=\(names.joined(separator: ";")),Signature=\(signature)"]
    }

    /// A URL anyone may use for `expires` seconds (`GET` by default) with no other credentials.
    public func presign(method: String = "GET", url: URL, expires: Int, date: Date = Date()) -> URL {
        let (stamp, day) = Self.timestamps(date)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        var query = Self.queryItems(url)
        query += [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", "\(credentials.accessKey)/\(scope)"),
                  ("X-Amz-Date", stamp), ("X-Amz-Expires", String(expires)), ("X-Amz-SignedHeaders", "host")]
        let canonicalQuery = Self.canonicalQuery(query)
        let canonical = [method, Self.canonicalPath(url), canonicalQuery, "host:\(Self.host(url))\n", "host", Self.unsignedPayload]
            .joined(separator: "\n")
        let signature = self.signature(canonical, stamp: stamp, day: day, scope: scope)
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)!
        components.percentEncodedQuery = canonicalQuery + "&X-Amz-Signature=" + signature
        return components.url!
    }

    private func signature(_ canonicalRequest: String, stamp: String, day: String, scope: String) -> String {
        let toSign = ["AWS4-HMAC-SHA256", stamp, scope, ByteEncoding.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return ByteEncoding.hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
    }

    package static func host(_ url: URL) -> String {
        let host = url.host ?? ""
        guard let port = url.port, !(url.scheme == "http" && port == 80), !(url.scheme == "https" && port == 443) else { return host }
        return "\(host):\(port)"
    }

    static func timestamps(_ date: Date) -> (stamp: String, day: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!), day)
    }

    /// RFC 3986 encoding as SigV4 wants it: everything but unreserved characters (and `/` in paths).
    package static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.append(Character(UnicodeScalar(byte)))
            case UInt8(ascii: "/") where keepSlash:
                result.append("/")
            default:
                result += String(format: "%%%02X", byte)
            }
        }
        return result
    }

    static func canonicalPath(_ url: URL) -> String {
        let path = URLComponents(url: url, resolvingAgainstBaseURL: false)?.path ?? "/"
        return path.isEmpty ? "/" : encode(path, keepSlash: true)
    }

    package static func queryItems(_ url: URL) -> [(String, String)] {
        (URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []).map { ($0.name, $0.value ?? "") }
    }

    static func canonicalQuery(_ items: [(String, String)]) -> String {
        let encoded: [(name: String, value: String)] = items.map { (encode($0.0), encode($0.1)) }
        let sorted = encoded.sorted { left, right in left.name == right.name ? left.value < right.value : left.name < right.name }
        return sorted.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
    }
}
