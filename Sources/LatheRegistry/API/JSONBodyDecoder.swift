import Foundation
import Hummingbird
import LatheSpec
import NIOCore
import NIOFoundationCompat

/// A body type read straight from a parsed JSON value; nil sends the body through JSONDecoder,
/// which says what is wrong.
protocol JSONValueDecodable: Decodable {
    init?(json: JSONValue)
}

/// Decodes every JSON request body the routes take (`request.decode(as:context:)`), turning each
/// way a body can be wrong into a ``RegistryError`` with a sentence that names the field and says
/// what to send: too large (413), not UTF-8, not JSON, a missing field, a field of the wrong type.
struct JSONBodyDecoder: RequestDecoder {
    /// The largest JSON body the API's routes take.
    static let maxBytes = 2 << 20
    /// The largest body this decoder takes (worker reports carry logs: more).
    var limit = JSONBodyDecoder.maxBytes

    func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw RegistryError(413, "the JSON body is larger than \(limit >> 20) MB; send large files through /v1/files and pass their URLs",
                                code: "SIZE_INVALID")
        }
        let data = Data(buffer: buffer)
        guard let text = String(validating: data, as: UTF8.self) else {
            throw RegistryError(400, "the request body is not valid UTF-8 text; send JSON encoded as UTF-8", code: "UNSUPPORTED")
        }
        // The prediction's body is read on every create: the fast reader first; anything it
        // does not take goes through JSONDecoder, whose errors become the sentences below.
        if let fast = type as? any JSONValueDecodable.Type, let json = JSONValue(parsing: text), let value = fast.init(json: json) as? T {
            return value
        }
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw RegistryError(400, Self.sentence(error), code: "UNSUPPORTED")
        }
    }

    /// What was wrong with the body, in words a client author can act on.
    static func sentence(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.isEmpty ? "the body" : "`" + keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[") + "`"
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "the JSON body has no \(path(context.codingPath + [key])); add it and send again"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) must be \(describe(type)); fix it and send again"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "the request body is not valid JSON; send a JSON object" }
            return "\(path(context.codingPath)) is not valid: \(context.debugDescription)"
        @unknown default:
            return "the request body is not the JSON this endpoint takes"
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        let name = String(describing: type)
        if name.hasPrefix("Dictionary") { return "a JSON object" }
        if name.hasPrefix("Array") { return "a JSON array" }
        if name.hasPrefix("String") { return "a string" }
        if name.hasPrefix("Bool") { return "true or false" }
        if name.hasPrefix("Int") || name.hasPrefix("Double") || name.hasPrefix("Float") { return "a number" }
        if name.hasPrefix("JSONValue") { return "a JSON value" }
        return "a JSON value of another shape"
    }
}
