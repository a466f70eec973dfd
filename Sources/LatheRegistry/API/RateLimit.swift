import Foundation
import Hummingbird

/// Per-account request budgets per minute (Replicate's: 600 prediction creations and 3000 other
/// requests), with `ratelimit-remaining`/`ratelimit-reset` on answers and 429 + `Retry-After`
/// when spent.
public actor RateLimiter {
    struct Window {
        var start: Date
        var creates = 0
        var others = 0
    }

    let createsPerMinute: Int
    let requestsPerMinute: Int
    private var windows: [String: Window] = [:]
    /// Counts shared by replicas (PostgreSQL); nil counts in this process's memory.
    private let shared: RateCounterStore?

    public init(createsPerMinute: Int = 600, requestsPerMinute: Int = 3000, shared: RateCounterStore? = nil) {
        self.createsPerMinute = createsPerMinute
        self.requestsPerMinute = requestsPerMinute
        self.shared = shared
    }

    /// Counts one request; returns whether it may go on, what is left and seconds to reset.
    func take(_ key: String, create: Bool) async -> (allowed: Bool, remaining: Int, reset: Int) {
        guard let shared else { return takeLocally(key, create: create) }
        // Minutes aligned to the clock, so every replica counts into the same window.
        let now = Date().timeIntervalSince1970
        let start = (now / 60).rounded(.down) * 60
        let reset = max(1, Int(ceil(start + 60 - now)))
        let limit = create ? createsPerMinute : requestsPerMinute
        do {
            let count = try await shared.increment("\(key):\(create ? "create" : "other")", window: Timestamp.string(Date(timeIntervalSince1970: start)))
            return (count <= limit, max(0, limit - count), reset)
        } catch {
            // The database is what answers the request anyway: do not refuse for this alone.
            return takeLocally(key, create: create)
        }
    }

    private func takeLocally(_ key: String, create: Bool) -> (allowed: Bool, remaining: Int, reset: Int) {
        let now = Date()
        var window = windows[key] ?? Window(start: now)
        if now.timeIntervalSince(window.start) >= 60 { window = Window(start: now) }
        let reset = max(1, Int(ceil(60 - now.timeIntervalSince(window.start))))
        let limit = create ? createsPerMinute : requestsPerMinute
        let used = create ? window.creates : window.others
        guard used < limit else { return (false, 0, reset) }
        if create { window.creates += 1 } else { window.others += 1 }
        windows[key] = window
        if windows.count > 100_000 { windows = windows.filter { now.timeIntervalSince($0.value.start) < 60 } }
        return (true, limit - used - 1, reset)
    }
}

struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = RegistryContext
    let limiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let key = context.principal?.user.id ?? "anonymous"
        let create = request.method == .post && request.uri.path.hasSuffix("/predictions")
        let (allowed, remaining, reset) = await limiter.take(key, create: create)
        guard allowed else {
            var response = RegistryError(429, "Request was throttled. Your rate limit resets in ~\(reset)s.").problemResponse()
            response.headers[.retryAfter] = String(reset)
            response.headers[.init("ratelimit-remaining")!] = "0"
            response.headers[.init("ratelimit-reset")!] = String(reset)
            return response
        }
        var response = try await next(request, context)
        response.headers[.init("ratelimit-remaining")!] = String(remaining)
        response.headers[.init("ratelimit-reset")!] = String(reset)
        return response
    }
}
