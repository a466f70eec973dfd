import Foundation
import Hummingbird
import LatheRunner
import LatheStore

/// Reads `Authorization: Bearer <token>`, `Token <token>` (Replicate's older scheme) or
/// `Basic base64(user:token)` (OCI clients) and sets the principal. Tokens are never logged.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let accounts: AccountStore
    let workers: WorkerTokenStore

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let credentials = Self.credentials(from: header)
            let token = credentials?.token
            if let token, token.hasPrefix(WorkerTokenStore.prefix) {
                // A worker token opens the worker protocol and reads under /v2, nothing else.
                if Self.workerMayUse(request), let worker = try await workers.authenticate(token) {
                    context.worker = worker
                } else {
                    context.rejectedCredentials = true
                }
            } else if let token, let principal = try await accounts.authenticate(token: token),
                      credentials?.user.map({ $0 == principal.user.username }) ?? true {
                // Basic names a user: it must be the token's owner (another name is a mistake or a probe).
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

    /// What an `Authorization` header carries: a token, and for Basic the user it names.
    struct Credentials: Equatable {
        var token: String
        var user: String?
    }

    /// The one parser of `Authorization` headers (nil for a scheme or shape it does not know).
    static func credentials(from header: String) -> Credentials? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "bearer", "token":
            return Credentials(token: String(parts[1].trimmingBlanks))
        case "basic":
            guard let data = Data(base64Encoded: String(parts[1].trimmingBlanks)),
                  let decoded = String(data: data, encoding: .utf8), let colon = decoded.firstIndex(of: ":") else { return nil }
            return Credentials(token: String(decoded[decoded.index(after: colon)...]), user: String(decoded[..<colon]))
        default:
            return nil
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (Foundation's `trimmingCharacters` goes
    /// through NSString on Linux, on every authenticated request).
    var trimmingBlanks: Substring {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return self[first...last]
    }
}
