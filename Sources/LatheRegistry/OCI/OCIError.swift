import Foundation
import NIOCore
import NIOFoundationCompat
import Hummingbird

/// The distribution spec's error body: `{"errors":[{"code","message","detail"}]}`.
struct OCIErrorBody: Codable {
    struct Entry: Codable {
        var code: String
        var message: String
        var detail: String?
    }
    var errors: [Entry]
}

extension RegistryError {
    /// The error as a /v2 response, with the Basic challenge on 401.
    func ociResponse() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if status == 401 { headers[.wwwAuthenticate] = #"Basic realm="Lathe registry""# }
        let body = (try? JSONEncoder().encode(OCIErrorBody(errors: [.init(code: code, message: message)]))) ?? Data()
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(data: body)))
    }
}

/// Turns thrown ``RegistryError``s under /v2 into the spec's JSON errors.
struct OCIErrorMiddleware: RouterMiddleware {
    typealias Context = RegistryContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return RegistryError(from: error, request: request, logger: context.logger).ociResponse()
        }
    }
}
