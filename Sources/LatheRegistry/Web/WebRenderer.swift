import Foundation
import Hummingbird
import Mustache
import NIOCore
import LatheStore
import LatheCore

/// Renders the web UI's Mustache templates (shipped as resources) into HTML responses.
/// Mustache escapes every `{{value}}`; only `{{{html}}}` from `Markdown` is inserted raw.
struct WebRenderer: Sendable {
    let library: MustacheLibrary
    let signupOpen: Bool

    init(signupOpen: Bool) throws {
        self.signupOpen = signupOpen
        var library = MustacheLibrary()
        guard let folder = Bundle.module.url(forResource: "templates", withExtension: nil) else {
            throw RegistryError(500, "the web templates are missing from the installation")
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".mustache") {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            try library.register(text, named: String(name.dropLast(".mustache".count)))
        }
        self.library = library
    }

    /// A page: `template` inside the layout, with what every page shows (who is signed in, the
    /// account acted as, the CSRF token for forms).
    func page(_ template: String, title: String, context: RegistryContext, status: HTTPResponse.Status = .ok,
              _ data: [String: Any] = [:]) -> Response {
        var values = data
        values["title"] = title
        values["csrf"] = context.csrfToken
        values["signupOpen"] = signupOpen
        if let session = context.session {
            values["me"] = session.principal.user.username
            values["acting"] = session.acting.username
            values["actingOrganization"] = session.acting.kind == .organization
        }
        let html = library.render(values, withTemplate: template) ?? "template \(template) is missing"
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func error(_ status: Int, _ message: String, context: RegistryContext) -> Response {
        let title = status == 404 ? "Not found" : status == 403 ? "Not allowed" : "Something went wrong"
        return page("error", title: title, context: context, status: HTTPResponse.Status(code: status),
                    ["status": status, "message": status == 404 ? "There is nothing here, or you may not see it." : message])
    }
}

/// Sessions, CSRF and errors for the web pages: the session cookie signs the browser in, every
/// visitor gets a `lathe_csrf` cookie whose value forms must echo, cross-site posts are refused
/// by their `Origin`, and errors become HTML pages (401 sends the browser to sign in).
struct WebMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let registry: Registry
    let sessions: SessionStore
    let pages: WebRenderer

    static let sessionCookie = "lathe_session"
    static let csrfCookie = "lathe_csrf"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let cookies = request.cookies
        if let secret = cookies[Self.sessionCookie]?.value, let session = try await sessions.session(secret: secret) {
            context.session = session
            context.principal = session.principal
        }
        let existing = cookies[Self.csrfCookie]?.value.filter { $0.isHexDigit }
        context.csrfToken = existing.flatMap { $0.count == 64 ? $0 : nil } ?? SessionStore.randomSecret()
        let cookieToken = context.csrfToken
        if let session = context.session {
            // Signed in, the token is derived from the session itself: a cookie planted by
            // someone else (a sibling subdomain, a shared browser) cannot stand in for it.
            context.csrfToken = Self.csrfToken(for: session)
        }
        var response: Response
        do {
            if request.method == .post, let origin = request.headers[.origin], !Self.sameOrigin(origin, request: request),
               origin != Self.origin(of: registry.baseURL) {
                throw RegistryError(403, "Cross-site form posts are refused.")
            }
            do {
                response = try await next(request, context)
            } catch let error where !(error is RegistryError) {
                // A store's or the core's own error, as the pages answer it.
                throw RegistryError(domain: error) ?? error
            }
        } catch let error as RegistryError {
            if error.status == 401 {
                let next = request.uri.path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? "/"
                response = Response(status: .seeOther, headers: [.location: "/signin?next=\(next)"])
            } else {
                response = pages.error(error.status, error.message, context: context)
            }
        } catch let error as HTTPError {
            response = pages.error(Int(error.status.code), error.body ?? "", context: context)
        }
        if existing != cookieToken {
            response.setCookie(Self.cookie(Self.csrfCookie, cookieToken, request: request, registry: registry))
        }
        response.headers[.init("Content-Security-Policy")!] = Self.policy
        response.headers[.init("X-Content-Type-Options")!] = "nosniff"
        response.headers[.init("Referrer-Policy")!] = "same-origin"
        return response
    }

    /// The CSRF token of a signed-in browser: a hash of its session's stored id hash.
    static func csrfToken(for session: WebSession) -> String {
        AccountStore.hash("csrf:" + session.idHash)
    }

    /// No inline scripts, no plugins, no framing: a payload that slips into a page still cannot run.
    static let policy = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; script-src 'self'; "
        + "style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

    /// Session and CSRF cookies: HttpOnly, SameSite=Lax, and Secure behind TLS.
    static func cookie(_ name: String, _ value: String, request: Request, registry: Registry, maxAge: Int? = nil) -> Cookie {
        let secure = registry.baseURL.hasPrefix("https:") || request.headers[.init("X-Forwarded-Proto")!] == "https"
        return Cookie(name: name, value: value, maxAge: maxAge, path: "/", secure: secure, httpOnly: true, sameSite: .lax)
    }

    /// `scheme://host[:port]` of the configured base URL (behind a proxy, the public origin).
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host else { return nil }
        return "\(scheme)://\(host)" + (components.port.map { ":\($0)" } ?? "")
    }

    /// Whether a browser's `Origin` names the host the request was sent to.
    static func sameOrigin(_ origin: String, request: Request) -> Bool {
        guard let components = URLComponents(string: origin), let host = components.host else { return false }
        return (components.port.map { "\(host):\($0)" } ?? host) == request.head.authority
    }
}
