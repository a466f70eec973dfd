import Hummingbird
import LatheRunner

/// Sets ``RegistryContext/clientAddress`` to the client's address: the TCP peer, or, when the
/// peer is one of the operator's trusted proxies (`--trusted-proxy`), the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy. A header from anyone else is ignored, so a
/// client cannot choose the address its throttles and anonymous budget are counted under.
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let trusted: [IPNetwork]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !trusted.isEmpty else { return try await next(request, context) }
        var context = context
        context.clientAddress = Self.client(peer: context.clientAddress, forwardedFor: request.headers[values: .init("X-Forwarded-For")!], trusted: trusted)
        return try await next(request, context)
    }

    /// The client's address given the peer and the `X-Forwarded-For` values (in the order the
    /// headers came; each proxy appends the address it heard from).
    static func client(peer: String, forwardedFor: [String], trusted: [IPNetwork]) -> String {
        func isTrusted(_ text: String) -> Bool { IPAddress(text).map { address in trusted.contains { $0.contains(address) } } ?? false }
        guard isTrusted(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            guard let address = IPAddress(hop) else { return peer }  // a malformed hop: trust nothing left of it
            if !isTrusted(hop) { return address.description }
        }
        return peer
    }
}
