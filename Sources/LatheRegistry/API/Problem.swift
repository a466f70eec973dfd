import Foundation
import NIOCore
import NIOFoundationCompat
import Hummingbird
import LatheSpec

extension RegistryError {
    /// The error as Replicate's API shapes it: RFC 7807 problem JSON.
    func problemResponse() -> Response {
        let titles = [400: "Bad Request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Too large",
                      422: "Invalid input", 429: "Too many requests"]
        let body: JSONValue = .object(["title": .string(titles[status] ?? "Error"), "detail": .string(message), "status": .int(status)])
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if status == 401 { headers[.wwwAuthenticate] = #"Bearer realm="Lathe""# }
        return Response(status: .init(code: status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(data: (try? JSON.canonical(body)) ?? Data())))
    }
}

/// Turns thrown ``RegistryError``s under /v1 into problem JSON.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = RegistryContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as RegistryError {
            return error.problemResponse()
        } catch let error as DecodingError {
            return RegistryError(400, "the request body is not the JSON this endpoint takes: \(error.localizedDescription)").problemResponse()
        }
    }
}

/// A JSON response with explicit nulls (the wire shapes below are built as `JSONValue`).
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
}

extension JSONValue {
    /// `.string` or `.null`.
    static func optional(_ text: String?) -> JSONValue { text.map(JSONValue.string) ?? .null }
}
