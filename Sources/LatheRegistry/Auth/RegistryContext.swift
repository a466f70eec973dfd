import Hummingbird
import Logging
import LatheStore

/// The per-request context: Hummingbird's core storage plus who is calling.
public struct RegistryContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The caller, when a valid token came with the request.
    public var principal: Principal?
    /// The worker token a `lathe worker` sent (worker protocol and `/v2` pulls only).
    public var worker: WorkerTokenRecord?
    /// True when the request carried credentials that were not valid (never silently anonymous).
    public var rejectedCredentials = false
    /// The browser session on web pages (its principal is also set as `principal`).
    public var session: WebSession?
    /// The CSRF token every web form must send back as `_csrf` (the `lathe_csrf` cookie's value).
    public var csrfToken = ""

    /// Every JSON body is decoded by one decoder whose errors are sentences (see ``JSONBodyDecoder``).
    public var requestDecoder: some RequestDecoder { JSONBodyDecoder() }

    /// The client's address (the TCP peer), for throttles keyed by where attempts come from.
    public var clientAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}
