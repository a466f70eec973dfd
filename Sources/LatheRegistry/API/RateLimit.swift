import Foundation
import Hummingbird
import LatheStore

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

    /// A key's minute as this replica knows it: the total all replicas had written at the last
    /// flush, what this replica counted since, and the total of the minute before.
    private struct SharedWindow {
        var start: String
        var known = 0
        var pending = 0
        var previous = 0
    }
    private var sharedWindows: [String: SharedWindow] = [:]
    private var flushing = false

    /// Counts one request; returns whether it may go on, what is left and seconds to reset.
    ///
    /// Scaled out, counts live in a table every replica adds to, in clock-aligned minutes; the
    /// minute before still weighs in proportion to how much of it the last 60 s cover (a sliding
    /// estimate, so a burst across a minute boundary is not let through twice). Far from the
    /// limit, counts are added in batches every 100 ms, off the request's path; from half the
    /// limit on, every request adds its count at once and is decided on the exact total.
    func take(_ key: String, create: Bool) async -> (allowed: Bool, remaining: Int, reset: Int) {
        guard let shared else { return takeLocally(key, create: create) }
        let now = Date().timeIntervalSince1970
        let startSeconds = (now / 60).rounded(.down) * 60
        let reset = max(1, Int(ceil(startSeconds + 60 - now)))
        let start = Timestamp.string(Date(timeIntervalSince1970: startSeconds))
        let limit = create ? createsPerMinute : requestsPerMinute
        let counter = "\(key):\(create ? "create" : "other")"
        var window = sharedWindows[counter] ?? SharedWindow(start: start)
        if window.start != start {
            let minuteBefore = Timestamp.string(Date(timeIntervalSince1970: startSeconds - 60))
            window = SharedWindow(start: start, previous: window.start == minuteBefore ? window.known + window.pending : 0)
        }
        let carried = Int((Double(window.previous) * (1 - (now - startSeconds) / 60)).rounded(.up))
        guard carried + window.known + window.pending < limit else {
            sharedWindows[counter] = window
            return (false, 0, reset)
        }
        if 2 * (carried + window.known + window.pending + 1) >= limit {
            // Near the limit: add now (with anything not yet flushed) and decide on the total.
            let amount = window.pending + 1
            window.pending = 0
            sharedWindows[counter] = window
            guard let total = try? await shared.add(amount, to: counter, window: start) else { return takeLocally(key, create: create) }
            learn(total, for: counter, window: start)
            return (carried + total <= limit, max(0, limit - carried - total), reset)
        }
        window.pending += 1
        sharedWindows[counter] = window
        if !flushing {
            flushing = true
            Task { await self.flush() }
        }
        return (true, max(0, limit - carried - window.known - window.pending), reset)
    }

    /// Records a total read back from the table (never lowering what is known).
    private func learn(_ total: Int, for counter: String, window start: String) {
        guard var window = sharedWindows[counter], window.start == start else { return }
        window.known = max(window.known, total)
        sharedWindows[counter] = window
    }

    /// Adds the counts of the last 100 ms to the shared table and learns the totals.
    private func flush() async {
        try? await Task.sleep(nanoseconds: 100_000_000)
        guard let shared else { return }
        let batch = sharedWindows.filter { $0.value.pending > 0 }
        for (counter, window) in batch {
            sharedWindows[counter]?.pending -= window.pending
            if let total = try? await shared.add(window.pending, to: counter, window: window.start) {
                learn(total, for: counter, window: window.start)
            }
        }
        if sharedWindows.count > 100_000 { sharedWindows = sharedWindows.filter { $0.value.pending > 0 } }
        flushing = false
        if sharedWindows.values.contains(where: { $0.pending > 0 }) {
            flushing = true
            Task { await self.flush() }
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
        // Anonymous clients each have a budget of their own, by address (see ClientAddressMiddleware).
        let key = context.principal?.user.id ?? "anonymous:\(context.clientAddress)"
        // Classified by the route that matched, not the path as sent: `/v1/predictions/` and
        // `//v1//predictions` reach the same handler and must spend the same budget.
        let route = context.endpointPath ?? request.uri.path
        let create = request.method == .post && route.split(separator: "/").last == "predictions"
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
