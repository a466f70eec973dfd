import CoreMetrics
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import LatheStore
import LatheCore
import LatheRunner

/// Assembles the server: auth, then `/v2` (OCI), `/v1` (API), health routes and the web UI at `/`.
public enum RegistryApplication {
    /// `metrics` is served at `/metrics` only to requests bearing `metricsToken` (metrics name
    /// models and traffic: not for everyone); without a token it is not served on this port.
    public static func router(_ registry: Registry, scheduler: Scheduler, limiter: RateLimiter = RateLimiter(),
                              metrics: PrometheusCollectorRegistry? = nil, metricsToken: String? = nil,
                              web: WebSettings = WebSettings(), build: BuildVersion = .unknown) throws -> Router<RegistryContext> {
        let router = Router(context: RegistryContext.self)
        let webApp = try WebApp(registry: registry, scheduler: scheduler, predictions: PredictionService(registry: registry, scheduler: scheduler), settings: web)
        router.add(middleware: ClientAddressMiddleware(trusted: registry.trustedProxies))
        router.add(middleware: FallbackErrorMiddleware(pages: webApp.pages))
        router.add(middleware: LogRequestsMiddleware(.debug))
        if let metrics {
            router.add(middleware: MetricsMiddleware())
            if let metricsToken, !metricsToken.isEmpty {
                router.get("metrics") { request, _ -> Response in
                    guard let sent = request.headers[.authorization], constantTimeEqual(sent, "Bearer " + metricsToken) else {
                        throw RegistryError(401, "/metrics needs the operator's metrics token: send Authorization: Bearer <token>")
                    }
                    return metricsResponse(metrics)
                }
            }
        }
        router.add(middleware: AuthMiddleware(accounts: registry.accounts, workers: WorkerTokenStore(database: registry.database)))
        let health = try JSONEncoder().encode(HealthReport(version: build.version, commit: build.commit))
        router.get("healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: health)))
        }
        DistributionRoutes(registry: registry).add(to: router)
        WorkerRoutes(fleet: registry.fleet, logger: registry.logger).add(to: router)
        let v1 = router.group("v1").add(middleware: ProblemMiddleware()).add(middleware: RateLimitMiddleware(limiter: limiter))
        AccountRoutes(registry: registry).add(to: v1)
        ModelRoutes(registry: registry).add(to: v1)
        let predictions = PredictionRoutes(registry: registry, scheduler: scheduler)
        predictions.add(to: router, v1: v1)
        DeploymentRoutes(registry: registry, scheduler: scheduler, predictions: predictions).add(to: v1)
        FileRoutes(registry: registry).add(to: v1)
        webApp.add(to: router)
        return router
    }

    static func metricsResponse(_ metrics: PrometheusCollectorRegistry) -> Response {
        var text = [UInt8]()
        metrics.emit(into: &text)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    /// `/metrics` alone on its own address (`lathe serve --metrics-listen`), for a scraper on a
    /// private network; nothing else is served there.
    public static func metricsApplication(_ metrics: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger) -> some Service {
        let router = Router()
        router.get("metrics") { _, _ in metricsResponse(metrics) }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "lathe-metrics"), logger: logger)
    }

    /// Runs the application made by ``make``: its HTTP server accepts and handles each
    /// connection (the route included, and any default actor it calls) on ``HotPath``'s one event
    /// loop, which owns the sockets, instead of on Swift's global pool. A request then goes from
    /// the socket to the route and back without waking another thread; work a route hands
    /// elsewhere (the model's process, bcrypt, a file hashed on its own thread) still runs there.
    /// (With NIO's shared multi-loop group, a connection accepted on one loop was often served on
    /// another, and setting it up cost six cross-thread wake-ups.)
    public static func run(_ app: some ApplicationProtocol) async throws {
        try await withTaskExecutorPreference(HotPath.loopExecutor) {
            try await app.runService()
        }
    }

    /// The application listening on `host:port` (port 0 picks a free one). `onListening` gets the
    /// port once bound; the registry's base URL defaults to `http://host:port`.
    /// `metrics` serves `/metrics`; the caller bootstraps swift-metrics with it once per process.
    /// `connectionTimeout` closes a connection that sends nothing for that long: an idle
    /// keep-alive, a request whose headers have not all arrived, or a body that stalls.
    public static func make(_ registry: Registry, scheduler: Scheduler, limiter: RateLimiter = RateLimiter(), host: String, port: Int,
                            metrics: PrometheusCollectorRegistry? = nil, metricsToken: String? = nil, web: WebSettings = WebSettings(),
                            connectionTimeout: Int64 = 30, build: BuildVersion = .unknown,
                            services: [any Service] = [],
                            onListening: @escaping @Sendable (Int) -> Void = { _ in }) throws -> some ApplicationProtocol {
        HotPath.enable()
        return Application(
            router: try router(registry, scheduler: scheduler, limiter: limiter, metrics: metrics, metricsToken: metricsToken, web: web, build: build),
            server: .http1(configuration: .init(idleTimeout: .seconds(max(1, connectionTimeout)))),
            configuration: .init(address: .hostname(host, port: port), serverName: "lathe", backlog: 1024),
            // The background services run on Swift's pool, not on the HTTP loop (see `run`).
            services: services.map { OffHotPath(inner: $0) },
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                if registry.baseURL.isEmpty { registry.base.value = "http://\(host):\(bound)" }
                if registry.replicaURL.value.isEmpty {
                    // Bound to every address: the others reach it on loopback (one host) unless
                    // the operator names its address with --replica-url.
                    let reachable = ["0.0.0.0", "::", "[::]"].contains(host) ? "127.0.0.1" : host.contains(":") ? "[\(host)]" : host
                    registry.replicaURL.value = "http://\(reachable):\(bound)"
                }
                onListening(bound)
            },
            eventLoopGroupProvider: .shared(HotPath.loopGroup),
            logger: registry.logger
        )
    }
}

/// A background service kept off the HTTP loop: its work (and every task it starts) runs on
/// Swift's global pool, whatever executor the application runs on.
struct OffHotPath: Service {
    let inner: any Service

    func run() async throws {
        try await withTaskExecutorPreference(globalConcurrentExecutor) {
            try await inner.run()
        }
    }
}
