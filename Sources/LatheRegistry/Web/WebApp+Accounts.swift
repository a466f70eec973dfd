import Foundation
import Hummingbird
import LatheStore
import LatheCore

/// Sign up, sign in and out, the account page (tokens, webhook secret, acting as), organizations.
extension WebApp {
    func addAccountPages(to web: RouterGroup<RegistryContext>) {
        web.get("signin") { request, context in
            pages.page("signin", title: "Sign in", context: context, ["action": "/signin", "next": Self.safeNext(request.uri.queryParameters["next"].map(String.init))])
        }
        web.post("signin") { request, context -> Response in
            let form = try await WebForm.read(request, context: context)
            // Throttled per client address and username: guessing from one place is slowed, and
            // nobody elsewhere can lock the user out. Failures add a growing delay (up to 5 s).
            let key = "signin:\(context.clientAddress):" + (form["username"] ?? "").lowercased()
            // 10 attempts in any 60 s, so passwords cannot be guessed at speed.
            let (allowed, oldest, failures) = try await signins.attempt(key, limit: 10)
            let reset = max(1, Int((oldest ?? Date()).addingTimeInterval(60).timeIntervalSinceNow.rounded(.up)))
            if failures > 2 { try await Task.sleep(seconds: min(5, 0.25 * pow(2, Double(failures - 3)))) }
            guard allowed else {
                var response = pages.page("signin", title: "Sign in", context: context, status: .tooManyRequests,
                                          ["action": "/signin", "next": Self.safeNext(form["next"]), "username": form["username"] ?? "",
                                           "formError": "Too many sign-in attempts for this account. Wait \(reset) seconds, then try again."])
                response.headers[.retryAfter] = String(reset)
                return response
            }
            guard let user = try await registry.accounts.verifyPassword(username: form["username"] ?? "", password: form["password"] ?? "") else {
                try await signins.failed(key)
                return pages.page("signin", title: "Sign in", context: context, status: .unauthorized,
                                  ["action": "/signin", "next": Self.safeNext(form["next"]), "username": form["username"] ?? "",
                                   "formError": "That username and password do not match an account."])
            }
            try await signins.succeeded(key)
            return try await startSession(user, request: request, next: Self.safeNext(form["next"]))
        }
        web.get("signup") { _, context in
            guard settings.signupOpen else { throw RegistryError(404, "sign-up is closed") }
            return pages.page("signin", title: "Sign up", context: context, ["action": "/signup", "signup": true, "next": "/account"])
        }
        web.post("signup") { request, context -> Response in
            guard settings.signupOpen else { throw RegistryError(404, "sign-up is closed") }
            let form = try await WebForm.read(request, context: context)
            let username = form["username"] ?? "", password = form["password"] ?? ""
            func again(_ message: String) -> Response {
                pages.page("signin", title: "Sign up", context: context, status: .unprocessableContent,
                           ["action": "/signup", "signup": true, "next": "/account", "username": username, "formError": message])
            }
            guard password.count >= 8 else { return again("The password needs at least 8 characters.") }
            do {
                let user = try await registry.accounts.createUser(username, password: password)
                return try await startSession(user, request: request, next: "/account")
            } catch let error as StoreError where error.kind == .invalid || error.kind == .conflict {
                return again(error.message)
            }
        }
        web.post("signout") { request, context -> Response in
            _ = try await WebForm.read(request, context: context)
            if let session = context.session { try await sessions.end(session) }
            var response = redirect("/")
            response.setCookie(WebMiddleware.cookie(WebMiddleware.sessionCookie, "ended", request: request, registry: registry, maxAge: 0))
            return response
        }
        web.get("account") { _, context in try await accountPage(context) }
        web.post("account/tokens") { request, context in
            let session = try signedIn(context)
            let form = try await WebForm.read(request, context: context)
            let label = (form["label"] ?? "").trimmingCharacters(in: .whitespaces)
            let (secret, _) = try await registry.accounts.createToken(for: session.principal.user, label: label.isEmpty ? "web" : String(label.prefix(100)))
            return try await accountPage(context, extra: ["newToken": secret, "newTokenLabel": label])
        }
        web.post("account/tokens/:id/revoke") { request, context -> Response in
            let session = try signedIn(context)
            _ = try await WebForm.read(request, context: context)
            guard try await registry.accounts.revokeToken(try context.parameters.require("id"), of: session.principal.user) else {
                throw RegistryError(404, "no such token")
            }
            return redirect("/account")
        }
        web.post("account/act") { request, context -> Response in
            let session = try signedIn(context)
            let form = try await WebForm.read(request, context: context)
            guard let account = try await actingChoices(session).first(where: { $0.username == form["account"] }) else {
                throw RegistryError(404, "no such organization")
            }
            try await sessions.act(as: account, in: session)
            return redirect("/dashboard")
        }
        web.post("organizations") { request, context -> Response in
            let session = try signedIn(context)
            let form = try await WebForm.read(request, context: context)
            do {
                let organization = try await registry.accounts.createOrganization(form["name"] ?? "", owner: session.principal.user)
                return redirect("/organizations/\(organization.username)")
            } catch let error as StoreError where error.kind == .invalid || error.kind == .conflict {
                return try await accountPage(context, extra: ["notice": error.message], status: .unprocessableContent)
            }
        }
        web.get("organizations/:org") { _, context in
            let (organization, isOwner) = try await organization(context)
            let members = try await registry.accounts.members(organization)
            return pages.page("organization", title: organization.username, context: context, [
                "organization": organization.username, "isOwner": isOwner,
                "members": members.map { ["username": $0.0.username, "role": $0.1] },
            ])
        }
        web.post("organizations/:org/members") { request, context -> Response in
            let (organization, isOwner) = try await organization(context)
            let form = try await WebForm.read(request, context: context)
            guard isOwner else { throw RegistryError(403, "only owners of \(organization.username) may change its members") }
            guard let user = try await registry.accounts.account(named: form["username"] ?? ""), user.kind == .user else {
                throw RegistryError(404, "no such user")
            }
            try await registry.accounts.setMember(organization, user: user, role: form["role"] == "owner" ? "owner" : "member")
            return redirect("/organizations/\(organization.username)")
        }
        web.post("organizations/:org/members/:user/remove") { request, context -> Response in
            let (organization, isOwner) = try await organization(context)
            _ = try await WebForm.read(request, context: context)
            guard isOwner else { throw RegistryError(403, "only owners of \(organization.username) may change its members") }
            guard let user = try await registry.accounts.account(named: try context.parameters.require("user")) else { throw RegistryError(404, "no such user") }
            try await registry.accounts.removeMember(organization, user: user)
            return redirect("/organizations/\(organization.username)")
        }
    }

    private func startSession(_ user: Account, request: Request, next: String) async throws -> Response {
        let secret = try await sessions.create(for: user)
        var response = redirect(next)
        response.setCookie(WebMiddleware.cookie(WebMiddleware.sessionCookie, secret, request: request, registry: registry,
                                                maxAge: Int(SessionStore.lifetime)))
        return response
    }

    private func accountPage(_ context: RegistryContext, extra: [String: Any] = [:], status: HTTPResponse.Status = .ok) async throws -> Response {
        let session = try signedIn(context)
        let user = session.principal.user
        let tokens = try await registry.accounts.tokens(for: user)
        var organizations: [[String: Any]] = []
        for account in try await actingChoices(session) where account.kind == .organization {
            organizations.append(["username": account.username, "role": try await registry.accounts.role(of: user, in: account) ?? "member"])
        }
        var values: [String: Any] = [
            "tokens": tokens.map { token -> [String: Any] in
                var row: [String: Any] = ["id": token.id, "label": token.label, "createdAt": token.createdAt, "lastUsedAt": token.lastUsedAt ?? "never"]
                if let revoked = token.revokedAt { row["revokedAt"] = revoked }
                return row
            },
            "webhookSecret": try await scheduler.webhooks.secret(for: user.id),
            "organizations": organizations,
            "accounts": try await actingOptions(session),
        ]
        values.merge(extra) { $1 }
        return pages.page("account", title: "Account", context: context, status: status, values)
    }

    /// An organization the signed-in user belongs to (404 for everyone else), and whether they own it.
    private func organization(_ context: RegistryContext) async throws -> (Account, Bool) {
        let session = try signedIn(context)
        guard let organization = try await registry.accounts.account(named: try context.parameters.require("org")),
              organization.kind == .organization, session.principal.actsFor(organization.id) else {
            throw RegistryError(404, "no such organization")
        }
        return (organization, try await registry.accounts.role(of: session.principal.user, in: organization) == "owner")
    }

    /// Only a path on this site: it must start with one `/` followed by something other than a
    /// slash or backslash, and contain no control characters, whitespace or backslashes anywhere
    /// (browsers drop tabs and newlines, so `/%09/host` would become `//host`), checked on the
    /// percent-decoded text too.
    static func safeNext(_ value: String?) -> String {
        guard let value, value.utf8.count <= 2048 else { return "/" }
        for text in [value, value.removingPercentEncoding ?? "//"] {
            guard text.hasPrefix("/"), !text.hasPrefix("//"),
                  !text.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7f || $0 == "\\" || CharacterSet.whitespacesAndNewlines.contains($0) })
            else { return "/" }
        }
        return value
    }
}
