import Hummingbird
import LatheCore

extension OutputFiles {
    /// Files a model or a user made are served from the registry's own origin, so they may not
    /// act as pages: a sandboxing CSP (no scripts, no same-origin access), no MIME sniffing.
    static func headers(type: String) -> HTTPFields {
        [.contentType: type, .init("Content-Security-Policy")!: "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'",
         .init("X-Content-Type-Options")!: "nosniff"]
    }
}
