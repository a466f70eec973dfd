import Foundation
import Hummingbird
import NIOCore
import LatheStore
import LatheCore

/// Operator settings for the web UI.
public struct WebSettings: Sendable {
    /// Whether visitors may create accounts (`lathe serve --no-signup` turns it off).
    public var signupOpen = true
    public init(signupOpen: Bool = true) {
        self.signupOpen = signupOpen
    }
}

/// The web UI at `/` (DESIGN §5): server-rendered pages over the same stores as the API.
struct WebApp {
    let registry: Registry
    let scheduler: Scheduler
    let predictions: PredictionService
    let sessions: SessionStore
    let pages: WebRenderer
    let settings: WebSettings
    /// Sign-in attempts and failures per client address and username, on every replica alike.
    let signins: SigninAttemptStore

    init(registry: Registry, scheduler: Scheduler, predictions: PredictionService, settings: WebSettings) throws {
        self.registry = registry
        self.scheduler = scheduler
        self.predictions = predictions
        self.sessions = SessionStore(database: registry.database)
        self.pages = try WebRenderer(signupOpen: settings.signupOpen)
        self.signins = SigninAttemptStore(database: registry.database)
        self.settings = settings
    }

    func add(to router: Router<RegistryContext>) {
        router.get("static/:file") { _, context -> Response in
            let file = try context.parameters.require("file")
            guard ["app.js", "app.css"].contains(file), let url = Bundle.module.url(forResource: "static/\(file)", withExtension: nil),
                  let data = FileManager.default.contents(atPath: url.path) else { throw HTTPError(.notFound) }
            return Response(status: .ok, headers: [.contentType: file.hasSuffix(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8",
                                                   .cacheControl: "public, max-age=300"],
                            body: .init(byteBuffer: ByteBuffer(data: data)))
        }
        router.get("favicon.ico") { _, _ in Response(status: .noContent) }
        let web = router.group().add(middleware: WebMiddleware(registry: registry, sessions: sessions, pages: pages))
        addAccountPages(to: web)
        addPredictionPages(to: web)
        // Last: `/{owner}/{name}` would otherwise shadow nothing, but reads best after the fixed paths.
        addModelPages(to: web)
    }

    /// The session of a signed-in browser; 401 (a redirect to sign in) otherwise.
    func signedIn(_ context: RegistryContext) throws -> WebSession {
        guard let session = context.session else { throw RegistryError(401, "sign in first") }
        return session
    }

    /// 303 See Other: the browser follows with a GET (post/redirect/get).
    func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    /// The acting choices as `<select>` options, the current one selected.
    func actingOptions(_ session: WebSession) async throws -> [[String: Any]] {
        try await actingChoices(session).map { ["username": $0.username, "current": $0.id == session.acting.id] }
    }

    /// The accounts the user may act as: themselves first, then their organizations.
    func actingChoices(_ session: WebSession) async throws -> [Account] {
        var accounts = [session.principal.user]
        for id in session.principal.organizationIDs.sorted() {
            if let organization = try await registry.accounts.account(id: id) { accounts.append(organization) }
        }
        return accounts
    }
}
