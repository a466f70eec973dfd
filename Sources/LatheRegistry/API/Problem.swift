import Foundation
import NIOCore
import NIOFoundationCompat
import Hummingbird
import LatheSpec
import Logging
import LatheStore
import LatheCore

extension RegistryError {
    /// The error as Replicate's API shapes it: RFC 7807 problem JSON.
    func problemResponse() -> Response {
        let titles = [400: "Bad Request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 405: "Method not allowed", 409: "Conflict",
                      413: "Too large", 416: "Range not satisfiable", 422: "Invalid input", 429: "Too many requests", 500: "Server error",
                      503: "Unavailable"]
        let body: JSONValue = .object(["title": .string(titles[status] ?? "Error"), "detail": .string(message), "status": .int(status)])
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if status == 401 { headers[.wwwAuthenticate] = #"Bearer realm="Lathe""# }
        return Response(status: .init(code: status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(data: (try? JSON.canonical(body)) ?? Data())))
    }
}

extension RegistryError {
    /// Any error a handler or the framework threw, as the error the client is told about: ours
    /// as they are, the framework's with a sentence for their status, anything else a 500 whose
    /// details go to the log only (they may hold paths or internals).
    init(from error: any Error, request: Request, logger: Logger) {
        // A store's or the core's own error: its kind chooses the status.
        if let known = RegistryError(domain: error) {
            self = known
            return
        }
        switch error {
        case let error as RegistryError:
            self = error
        case is NIOTooManyBytesError:
            self.init(413, "the request body is too large for \(request.uri.path); send less, or large files through /v1/files", code: "SIZE_INVALID")
        case let error as HTTPError:
            let code = Int(error.status.code)
            let message: String
            switch code {
            case 404: message = "there is nothing at \(request.method) \(request.uri.path.prefix(200)); check the path against the API reference (docs/api.md)"
            case 405: message = "\(request.uri.path.prefix(200)) does not take \(request.method)"
            case 413: message = "the request body is too large for \(request.uri.path.prefix(200))"
            default: message = error.body.flatMap { $0.isEmpty ? nil : $0 } ?? "the request could not be handled (\(error.status.reasonPhrase))"
            }
            self.init(code, message, code: code == 404 ? "NAME_UNKNOWN" : "UNSUPPORTED")
        case let error where RegistryDatabase.isUnavailable(error):
            // PostgreSQL is down or restarting: a retryable 503, not a 500.
            logger.warning("database unavailable", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(RegistryDatabase.reason(error))"])
            self.init(503, "the registry's database is unavailable right now; try again in a few seconds", code: "UNAVAILABLE")
        case let error as any HTTPResponseError where error.status.code < 500:
            self.init(Int(error.status.code), "the request could not be handled (\(error.status.reasonPhrase))", code: "UNSUPPORTED")
        default:
            logger.error("request failed", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(RegistryDatabase.reason(error))"])
            self.init(500, "the server failed to handle this request; the operator's log has the details", code: "UNKNOWN")
        }
    }
}

/// Turns every error thrown under /v1 into problem JSON.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = RegistryContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return RegistryError(from: error, request: request, logger: context.logger).problemResponse()
        }
    }
}

/// The outermost middleware: whatever no inner middleware turned into a response (unknown paths,
/// errors outside the route groups) is answered in the shape of the surface asked for: problem
/// JSON under /v1 and /internal, the distribution spec's errors under /v2, an HTML page elsewhere.
struct FallbackErrorMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let pages: WebRenderer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let mapped = RegistryError(from: error, request: request, logger: context.logger)
            let path = request.uri.path
            if path.hasPrefix("/v2/") || path == "/v2" { return mapped.ociResponse() }
            if path.hasPrefix("/v1/") || path == "/v1" || path.hasPrefix("/internal/") || path == "/metrics" || path == "/healthz" {
                return mapped.problemResponse()
            }
            var response = pages.error(mapped.status, mapped.message, context: context)
            response.headers[.init("Content-Security-Policy")!] = WebMiddleware.policy
            response.headers[.init("X-Content-Type-Options")!] = "nosniff"
            return response
        }
    }
}

/// A JSON response with explicit nulls (the wire shapes below are built as `JSONValue`).
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: value.serialized())))
}

