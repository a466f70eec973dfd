import Foundation
import Hummingbird

/// Reads `Authorization: Bearer <token>`, `Token <token>` (Replicate's older scheme) or
/// `Basic base64(user:token)` (OCI clients) and sets the principal. Tokens are never logged.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let accounts: AccountStore

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            if let token = Self.token(from: header), let principal = try await accounts.authenticate(token: token) {
                context.principal = principal
            } else {
                context.rejectedCredentials = true
            }
        }
        return try await next(request, context)
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
