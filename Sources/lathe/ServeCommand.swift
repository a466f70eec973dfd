import ArgumentParser
import Foundation
import Hummingbird
import LatheRegistry
import LatheCore
import LatheStore
import LatheRunner
import LatheSpec
import Logging
import Prometheus
import CoreMetrics
import ServiceLifecycle
import Yams

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the registry: OCI distribution under /v2, the API under /v1, the web UI at / (SQLite and files under --data)."
    )

    @Option(help: "Data folder (env LATHE_DATA; default ./lathe-data).")
    var data: String?

    @Option(help: "Address to listen on (env LATHE_HOST; default 127.0.0.1).")
    var host: String?

    @Option(help: "Port, 0 for any free one (env LATHE_PORT; default 8080).")
    var port: Int?

    @Option(name: .customLong("base-url"), help: "URL clients use to reach this server (default http://HOST:PORT).")
    var baseURL: String?

    @Option(name: .customLong("replica-url"), help: "URL the other replicas reach this one at, to relay workers' reports (default http://HOST:PORT as bound; name this replica's own address when replicas run on several hosts).")
    var replicaURL: String?

    @Option(help: "PostgreSQL URL postgres://USER:PASSWORD@HOST:PORT/DB for metadata (env LATHE_DATABASE_URL; default SQLite in --data).")
    var database: String?

    @Option(help: "A YAML file with data:, host:, port:, base_url: and database: (flags and environment win).")
    var config: String?

    @Option(help: "A local folder for model environments, unpacked versions and instance work (default DATA/runtime; replicas that share --data need one each).")
    var runtime: String?

    @Option(name: .customLong("idle-timeout"), help: "Seconds an idle model instance lives before it is stopped (default 300).")
    var idleTimeout: Int?

    @Option(name: .customLong("max-instances"), help: "Most instances per version (default 2).")
    var maxInstances: Int?

    @Option(name: .customLong("max-instances-total"), help: "Most model instances the embedded worker runs (default 4).")
    var maxInstancesTotal: Int?

    @Option(name: .customLong("max-instances-per-account"),
            help: "Most instances one account's work may hold at once across the fleet, so others always get a slot (default: the fleet's capacity - 1, at least 1).")
    var maxInstancesPerAccount: Int?

    @Flag(name: .customLong("no-worker"), help: "Run no models here: an API-only server whose `lathe worker`s run them.")
    var noWorker = false

    @Option(name: .customLong("worker-lost-after"), help: "Seconds a remote worker may stay silent before its predictions run elsewhere (default 30).")
    var workerLostAfter: Double = 30

    @Option(name: .customLong("hardware-wait"), help: "Seconds a prediction waits for hardware no worker offers before it fails (default 600).")
    var hardwareWait: Double = 600

    @Option(name: .customLong("max-warm-per-account"), help: "Most instances one account's deployments may keep warm in all (min_instances summed; default 2).")
    var maxWarmPerAccount: Int = 2

    @Option(name: .customLong("max-timeout"), help: "Longest a prediction may run, in seconds, whatever its spec's timeout asks (default 1800).")
    var maxTimeout: Int?

    @Option(name: .customLong("data-retention"), help: "Seconds API predictions keep input, output, logs and files (default 3600).")
    var dataRetention: Int?

    @Option(name: .customLong("rate-limit-creates"), help: "Prediction creations per account per minute.")
    var createsPerMinute: Int = 600

    @Option(name: .customLong("rate-limit-requests"), help: "Other /v1 requests per account per minute.")
    var requestsPerMinute: Int = 3000

    @Flag(name: .customLong("no-signup"), help: "Do not let visitors create accounts on the web (admins still can with `lathe admin user create`).")
    var noSignup = false

    @Option(name: .customLong("allow-outbound"), parsing: .singleValue,
            help: "A CIDR block (e.g. 10.0.0.0/8) URL inputs and webhooks may reach although it is loopback, private or link-local; repeatable. By default only public addresses are reached.")
    var allowOutbound: [String] = []

    @Flag(name: .customLong("allow-direct-requirements"), help: "Accept pushed versions whose requirements name URLs, VCS links or local paths (refused by default).")
    var allowDirectRequirements = false

    @Option(name: .customLong("build-timeout"), help: "Minutes a model's environment build may take (default 15).")
    var buildTimeout: Int = 15

    @Option(name: .customLong("file-quota"), help: "Megabytes of uploaded files (/v1/files) one account may keep (default 1024).")
    var fileQuota: Int64 = 1024

    @Option(name: .customLong("trusted-proxy"), parsing: .singleValue,
            help: "A CIDR block (e.g. 127.0.0.1/32) of load balancers whose X-Forwarded-For names the client, for per-address limits; repeatable. By default the TCP peer is the client.")
    var trustedProxy: [String] = []

    @Option(name: .customLong("storage-quota"), help: "Megabytes of registry blobs (/v2 pushes, each digest counted once) one account may keep (default 102400).")
    var storageQuota: Int64 = 100 * 1024

    @Option(name: .customLong("max-blob-size"), help: "Megabytes one pushed blob (a weights file, a code layer) may have (default 20480).")
    var maxBlobSize: Int64 = 20 * 1024

    @Option(name: .customLong("upload-max-age"), help: "Seconds after which an untouched, unfinished upload (OCI or /v1/files) is removed (default 86400).")
    var uploadMaxAge: Int = 86_400

    @Option(name: .customLong("housekeeping-interval"), help: "Seconds between sweeps of expired files, abandoned uploads and unused unpacked versions (default 60).")
    var housekeepingInterval: Int = 60

    @OptionGroup var blobOptions: BlobOptions

    @Option(name: .customLong("blob-redirect"), help: "Answer blob downloads from S3 with a 307 to a presigned URL (true, the default) or stream them through the server (false).")
    var blobRedirect: Bool = true

    @Option(name: .customLong("gc-interval"), help: "Seconds between collections of blobs, files and outputs nothing refers to (default 3600; 0 turns them off; `lathe admin gc` runs one by hand).")
    var gcInterval: Int = 3600

    @Option(name: .customLong("metrics-listen"), help: "HOST:PORT to serve /metrics on, apart from the public port (e.g. 127.0.0.1:9090).")
    var metricsListen: String?

    @Option(name: .customLong("metrics-token"),
            help: "Serve /metrics on the public port to requests with Authorization: Bearer TOKEN (env LATHE_METRICS_TOKEN). Without it or --metrics-listen, /metrics is not served.")
    var metricsToken: String?

    @Option(name: .customLong("connection-timeout"),
            help: "Seconds a connection may send nothing (idle keep-alive, unfinished headers, a stalled body) before it is closed (default 30).")
    var connectionTimeout: Int = 30

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        try await guarded {
            let settings = try Settings(command: self)
            let metricsRegistry = PrometheusCollectorRegistry()
            Self.raiseDescriptorLimit()
            var logger = Logger(label: "lathe.registry")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            let data = URL(fileURLWithPath: settings.data)
            let runtimeFolder = runtime.map { URL(fileURLWithPath: $0) } ?? data.appendingPathComponent("runtime")
            let blobs = try blobOptions.store(runtime: runtimeFolder, file: settings.file)
            // Unreachable storage or refused credentials: one clear line now, not on the first push.
            try await blobs?.check()
            var registry = try await Registry.open(data: data, database: settings.database, blobs: blobs,
                                                   runtime: runtimeFolder, baseURL: settings.baseURL ?? "", logger: logger,
                                                   eventLoops: HotPath.loopGroup)
            registry.blobRedirect = blobRedirect
            registry.outbound = OutboundHTTP(policy: EgressPolicy(allowed: try allowOutbound.map { text in
                guard let network = IPNetwork(text) else {
                    throw ValidationError("--allow-outbound \(text) is not a CIDR block; write it like 10.0.0.0/8 or fd00::/8")
                }
                return network
            }))
            registry.requirements = RequirementPolicy(allowDirectReferences: allowDirectRequirements)
            registry.fileQuota = Self.bytes(megabytes: fileQuota)
            registry.storageQuota = Self.bytes(megabytes: storageQuota)
            registry.trustedProxies = try trustedProxy.map { text in
                guard let network = IPNetwork(text) else {
                    throw ValidationError("--trusted-proxy \(text) is not a CIDR block; write it like 127.0.0.1/32 or 10.0.0.0/8")
                }
                return network
            }
            registry.maxBlobSize = Self.bytes(megabytes: maxBlobSize)
            if let replicaURL {
                guard let url = URL(string: replicaURL), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                    throw ValidationError("--replica-url \(replicaURL) is not an http(s) URL; write it like http://10.0.0.5:8081")
                }
                registry.replicaURL.value = replicaURL
            }
            var schedulerSettings = Scheduler.Settings()
            schedulerSettings.sandbox = try Sandbox.detect(network: false)
            schedulerSettings.runtime = runtime.map { URL(fileURLWithPath: $0) }
            schedulerSettings.build = EnvironmentBuild(sandbox: schedulerSettings.sandbox, policy: registry.requirements)
            schedulerSettings.build.egress = registry.outbound.policy
            schedulerSettings.build.timeout = TimeInterval(max(1, buildTimeout)) * 60
            if let idle = idleTimeout { schedulerSettings.idleTimeout = TimeInterval(idle) }
            if let max = maxInstances { schedulerSettings.maxInstancesPerVersion = max }
            if let total = maxInstancesTotal { schedulerSettings.maxInstances = Swift.max(1, total) }
            schedulerSettings.maxInstancesPerAccount = maxInstancesPerAccount.map { Swift.max(1, $0) }
            schedulerSettings.embeddedWorker = !noWorker
            schedulerSettings.serverVersion = BuildInfo.version
            if !noWorker {
                // One machine alone offers its GPUs as `lathe worker` does (DESIGN §6).
                schedulerSettings.embeddedGPUs = HardwareInventory.detect(labels: []).gpus
                if !schedulerSettings.embeddedGPUs.isEmpty {
                    logger.info("the embedded worker offers this machine's GPUs", metadata: [
                        "gpus": "\(schedulerSettings.embeddedGPUs.map { "\($0.index): \($0.model) (\($0.sku))" }.joined(separator: ", "))"])
                }
            }
            schedulerSettings.hardwareWait = Swift.max(0, hardwareWait)
            var fleetSettings = WorkerFleet.Settings()
            fleetSettings.lostAfter = Swift.max(1, workerLostAfter)
            registry.fleet.settings = fleetSettings
            schedulerSettings.maxWarmPerAccount = Swift.max(0, maxWarmPerAccount)
            if let retention = dataRetention { schedulerSettings.dataRetention = TimeInterval(retention) }
            if let maxTimeout { schedulerSettings.maxTimeout = TimeInterval(maxTimeout) }
            // Scaled out, replicas hear each other through PostgreSQL; alone, events stay in memory.
            var events: any PredictionEvents = LocalEvents()
            var services: [any Service] = []
            if let url = settings.database, registry.database.kind == .postgres {
                let postgresEvents = try PostgresEvents(url: url, database: registry.database, logger: logger)
                events = postgresEvents
                services.append(postgresEvents)
            }
            let scheduler = Scheduler(registry: registry, settings: schedulerSettings, events: events)
            try await scheduler.start()
            if let metricsListen {
                let parts = metricsListen.split(separator: ":")
                guard parts.count == 2, let metricsPort = Int(parts[1]), (0...65535).contains(metricsPort) else {
                    throw ValidationError("--metrics-listen \(metricsListen) is not HOST:PORT, e.g. 127.0.0.1:9090")
                }
                services.append(RegistryApplication.metricsApplication(metricsRegistry, host: String(parts[0]), port: metricsPort, logger: logger))
            }
            var housekeeping = Housekeeping.Settings()
            housekeeping.uploadMaxAge = TimeInterval(Swift.max(1, uploadMaxAge))
            housekeeping.interval = TimeInterval(Swift.max(1, housekeepingInterval))
            housekeeping.collectionInterval = gcInterval > 0 ? TimeInterval(gcInterval) : nil
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metricsRegistry))
            metricsRegistry.makeGauge(descriptor: MetricNameDescriptor(namespace: "lathe", metricName: "build", unitName: "info",
                                                                        helpText: "The running build: version and commit as labels"),
                                       labels: [("version", BuildInfo.version), ("commit", BuildInfo.commit)]).set(Int64(1))
            let app = try RegistryApplication.make(registry, scheduler: scheduler,
                                                   limiter: RateLimiter(createsPerMinute: createsPerMinute, requestsPerMinute: requestsPerMinute,
                                                                        shared: registry.database.kind == .postgres ? RateCounterStore(database: registry.database) : nil),
                                                   host: settings.host, port: settings.port, metrics: metricsRegistry,
                                                   metricsToken: metricsToken ?? ProcessInfo.processInfo.environment["LATHE_METRICS_TOKEN"],
                                                   web: WebSettings(signupOpen: !noSignup), connectionTimeout: Int64(connectionTimeout),
                                                   build: BuildVersion(version: BuildInfo.version, commit: BuildInfo.commit),
                                                   services: services + [Housekeeping(registry: registry, scheduler: scheduler, settings: housekeeping,
                                                                                   isLeader: { [events] in events.isLeader }),
                                                                         WebhookDeliveryService(webhooks: scheduler.webhooks),
                                                                         ] + scheduler.services()) { [host = settings.host, folder = settings.data] port in
                // Tests and scripts read this line to learn the port when started with --port 0.
                print("lathe registry listening on http://\(host):\(port) (data \(folder))")
                fflush(nil)
            }
            do {
                try await RegistryApplication.run(app)
                await scheduler.shutdown()
            } catch {
                await scheduler.shutdown()
                try? await registry.database.close()
                throw error
            }
            try await registry.database.close()
        }
    }

    /// Every connection, upload and instance pipe is a descriptor: the soft limit (often 1024 or
    /// less) is raised to the hard one so that a few hundred idle clients cannot exhaust it.
    static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = min(limit.rlim_max, 1 << 20)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Flag, then environment, then config file, then default.
    struct Settings {
        var data: String
        var host: String
        var port: Int
        var baseURL: String?
        var database: String?
        /// The config file's mapping (blob store keys are read from it too).
        var file: [String: Any] = [:]

        init(command: ServeCommand) throws {
            try self.init(data: command.data, host: command.host, port: command.port, baseURL: command.baseURL,
                          database: command.database, config: command.config)
        }

        /// Also what `lathe doctor --server` checks: the stores a server with these flags would use.
        init(data: String?, host: String? = nil, port: Int? = nil, baseURL: String? = nil, database: String?, config: String?) throws {
            let environment = ProcessInfo.processInfo.environment
            var file: [String: Any] = [:]
            if let path = config {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8), let parsed = try Yams.load(yaml: text) as? [String: Any] else {
                    throw ValidationError("cannot read \(path) as a YAML mapping of data:, host:, port:, base_url:, database:")
                }
                file = parsed
            }
            self.data = data ?? environment["LATHE_DATA"] ?? file["data"] as? String ?? "lathe-data"
            self.host = host ?? environment["LATHE_HOST"] ?? file["host"] as? String ?? "127.0.0.1"
            self.port = port ?? environment["LATHE_PORT"].flatMap(Int.init) ?? file["port"] as? Int ?? 8080
            self.baseURL = baseURL ?? environment["LATHE_BASE_URL"] ?? file["base_url"] as? String
            self.database = database ?? environment["LATHE_DATABASE_URL"] ?? file["database"] as? String
            self.file = file
        }
    }

    /// Megabytes from a flag as bytes, clamped to 0…Int64.max (never wrapping around).
    static func bytes(megabytes: Int64) -> Int64 {
        let (value, overflow) = Swift.max(0, megabytes).multipliedReportingOverflow(by: 1 << 20)
        return overflow ? .max : value
    }
}
