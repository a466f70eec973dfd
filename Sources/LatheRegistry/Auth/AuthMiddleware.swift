import Foundation
import Hummingbird
import LatheRunner

/// Reads `Authorization: Bearer <token>`, `Token <token>` (Replicate's older scheme) or
/// `Basic base64(user:token)` (OCI clients) and sets the principal. Tokens are never logged.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let accounts: AccountStore
    let workers: WorkerTokenStore

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let token = Self.token(from: header)
            if let token, token.hasPrefix(WorkerTokenStore.prefix) {
                // A worker token opens the worker protocol and reads under /v2, nothing else.
                if Self.workerMayUse(request), let worker = try await workers.authenticate(token) {
                    context.worker = worker
                } else {
                    context.rejectedCredentials = true
                }
            } else if let token, let principal = try await accounts.authenticate(token: token) {
                context.principal = principal
            } else {
                context.rejectedCredentials = true
            }
        }
        return try await next(request, context)
    }

    /// Where a worker token is accepted: the worker protocol, and GET/HEAD under /v2 (pulls).
    static func workerMayUse(_ request: Request) -> Bool {
        let path = request.uri.path
        if path.hasPrefix(WorkerProtocol.root + "/") { return true }
        return path.hasPrefix("/v2/") && (request.method == .get || request.method == .head)
    }

    static func token(from header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer", "token":
            return String(parts[1]).trimmingCharacters(in: .whitespaces)
        case "basic":
            guard let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
                  let decoded = String(data: data, encoding: .utf8), let colon = decoded.firstIndex(of: ":") else { return nil }
            return String(decoded[decoded.index(after: colon)...])
        default:
            return nil
        }
    }
}
