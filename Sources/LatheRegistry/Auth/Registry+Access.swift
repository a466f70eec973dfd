import Foundation
import LatheCore
import LatheStore

/// Who may read, change and push which model, for a request's principal.
extension Registry {
    /// A model the caller may read, or 404 (private models are invisible, never 403).
    func readable(owner: String, name: String, context: RegistryContext) async throws -> ModelRecord {
        if context.rejectedCredentials { throw RegistryError(401, "the token is not valid (revoked or mistyped)", code: "UNAUTHORIZED") }
        if let worker = context.worker {
            // A worker reads a model's versions only while it was asked to run one of them.
            guard let model = try await models.anyModel(owner: owner, name: name) else {
                throw RegistryError.notFound("model \(owner)/\(name) does not exist")
            }
            guard model.isPublic else {
                guard await fleet.mayPull(tokenID: worker.id, modelID: model.id) else {
                    throw RegistryError.notFound("model \(owner)/\(name) does not exist")
                }
                return model
            }
            return model
        }
        guard let model = try await models.model(owner: owner, name: name, viewer: context.principal) else {
            throw RegistryError.notFound("model \(owner)/\(name) does not exist")
        }
        return model
    }

    /// A model the caller may change: members may edit and push, owners may also delete. Others
    /// who can see it get 403; those who cannot, 404.
    func manageable(owner: String, name: String, context: RegistryContext, ownerRole: Bool) async throws -> ModelRecord {
        let model = try await readable(owner: owner, name: name, context: context)
        guard let principal = context.principal else { throw RegistryError(401, "authentication required") }
        guard principal.actsFor(model.ownerID) else { throw RegistryError(403, "you may not change \(model.repository)") }
        if ownerRole, model.ownerID != principal.user.id, let organization = try await accounts.account(id: model.ownerID),
           try await accounts.role(of: principal.user, in: organization) != "owner" {
            throw RegistryError(403, "only owners of \(organization.username) may delete its models")
        }
        return model
    }

    /// The owner account the caller may push to, with the model when it already exists.
    func writable(owner: String, name: String, context: RegistryContext) async throws -> (Account, ModelRecord?) {
        guard let principal = context.principal else {
            throw RegistryError(401, context.rejectedCredentials ? "the token is not valid (revoked or mistyped)" : "authentication required: log in with a token",
                                code: "UNAUTHORIZED")
        }
        // The answer depends only on the namespace (whose existence is public), never on whether a
        // model sits under it, so a refused push tells nobody that a private model exists.
        guard let account = try await accounts.account(named: owner) else {
            throw RegistryError.notFound("there is no user or organization named \(owner): push to \(principal.user.username)/\(name), or create the organization first (POST /v1/organizations)")
        }
        guard principal.actsFor(account.id) else {
            throw RegistryError(403, "\(principal.user.username) may not push to \(owner)/\(name): only \(owner)\(account.kind == .organization ? "'s members" : "") may push to the \(owner) namespace; push to \(principal.user.username)/\(name) instead", code: "DENIED")
        }
        let model = try await models.model(owner: owner, name: name, viewer: principal)
        if model == nil, try await models.anyModel(owner: owner, name: name) != nil {
            throw RegistryError.notFound("model \(owner)/\(name) does not exist")
        }
        return (account, model)
    }
}
