import Foundation
import Hummingbird
import LatheSpec
import LatheStore
import LatheCore

/// `/v1/account`, `/v1/tokens` and `/v1/organizations`: Lathe's additions in Replicate's style.
struct AccountRoutes {
    let registry: Registry

    func add(to v1: RouterGroup<RegistryContext>) {
        v1.get("account") { _, context in try jsonResponse(WireShapes.account(try signedIn(context).user)) }
        v1.get("tokens") { _, context in
            let tokens = try await registry.accounts.tokens(for: try signedIn(context).user)
            return try jsonResponse(WireShapes.page(tokens.map(WireShapes.token), next: nil))
        }
        v1.post("tokens") { request, context in
            struct Body: Decodable { var label: String? }
            let body = try? await request.decode(as: Body.self, context: context)
            let (secret, record) = try await registry.accounts.createToken(for: try signedIn(context).user, label: body?.label ?? "api")
            guard case .object(var object) = WireShapes.token(record) else { throw RegistryError(500, "token shape") }
            object["token"] = .string(secret)
            return try jsonResponse(.object(object), status: .created)
        }
        v1.delete("tokens/:id") { _, context in
            guard try await registry.accounts.revokeToken(try context.parameters.require("id"), of: try signedIn(context).user) else {
                throw RegistryError(404, "no such token")
            }
            return Response(status: .noContent)
        }
        v1.post("organizations") { request, context in
            struct Body: Decodable { var name: String }
            let body = try await request.decode(as: Body.self, context: context)
            let organization = try await registry.accounts.createOrganization(body.name, owner: try signedIn(context).user)
            return try jsonResponse(WireShapes.account(organization), status: .created)
        }
        v1.get("organizations/:org/members") { _, context in
            let organization = try await memberOf(context, ownerOnly: false)
            let members = try await registry.accounts.members(organization)
            return try jsonResponse(WireShapes.page(members.map { .object(["username": .string($0.0.username), "role": .string($0.1)]) }, next: nil))
        }
        v1.put("organizations/:org/members/:user") { request, context in
            struct Body: Decodable { var role: String? }
            let organization = try await memberOf(context, ownerOnly: true)
            let role = (try? await request.decode(as: Body.self, context: context))?.role ?? "member"
            guard let user = try await registry.accounts.account(named: try context.parameters.require("user")) else {
                throw RegistryError(404, "no such user")
            }
            try await registry.accounts.setMember(organization, user: user, role: role)
            return try jsonResponse(.object(["username": .string(user.username), "role": .string(role)]))
        }
        v1.delete("organizations/:org/members/:user") { _, context in
            let organization = try await memberOf(context, ownerOnly: true)
            guard let user = try await registry.accounts.account(named: try context.parameters.require("user")) else {
                throw RegistryError(404, "no such user")
            }
            try await registry.accounts.removeMember(organization, user: user)
            return Response(status: .noContent)
        }
    }

    private func signedIn(_ context: RegistryContext) throws -> Principal {
        guard let principal = context.principal else {
            throw RegistryError(401, context.rejectedCredentials ? "the token is not valid (revoked or mistyped)" : "authentication required: send Authorization: Bearer <token>")
        }
        return principal
    }

    /// An organization the caller belongs to (as owner when `ownerOnly`); others get 404.
    private func memberOf(_ context: RegistryContext, ownerOnly: Bool) async throws -> Account {
        let principal = try signedIn(context)
        guard let organization = try await registry.accounts.account(named: try context.parameters.require("org")),
              organization.kind == .organization, principal.actsFor(organization.id) else {
            throw RegistryError(404, "no such organization")
        }
        if ownerOnly, try await registry.accounts.role(of: principal.user, in: organization) != "owner" {
            throw RegistryError(403, "only owners of \(organization.username) may change its members")
        }
        return organization
    }
}
