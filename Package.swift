// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Lathe",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lathe", targets: ["lathe"]),
        .library(name: "LatheSpec", targets: ["LatheSpec"]),
        .library(name: "LatheArchive", targets: ["LatheArchive"]),
        .library(name: "LatheRunner", targets: ["LatheRunner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/vapor/sql-kit", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit", from: "4.5.2"),
        // PostgreSQL for scaled-out registries (DESIGN §5): the same sql-kit stores over postgres-nio.
        .package(url: "https://github.com/vapor/postgres-kit", from: "2.17.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        // libarchive writes and reads the deterministic code layer (zlib through its gzip filter).
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        // GitHub's Markdown (cmark-gfm) renders readmes in its safe mode: no raw HTML, no unsafe URLs.
        .systemLibrary(
            name: "CMarkGFM",
            pkgConfig: "libcmark-gfm",
            providers: [.apt(["libcmark-gfm-dev", "libcmark-gfm-extensions-dev"])]
        ),
        // SHA-256 with a state that can be saved (BoringSSL's, linked through swift-crypto).
        .systemLibrary(name: "CSHA256State"),
        .target(
            name: "LatheSpec",
            dependencies: [.product(name: "Yams", package: "Yams")],
            resources: [.copy("Resources/inspect_predictor.py")],
            // ICU as Foundation ships it: patterns are matched with its step limit (PatternMatch).
            linkerSettings: [.linkedLibrary("_FoundationICU")]
        ),
        .target(
            name: "LatheArchive",
            dependencies: [
                "CArchive", "CSHA256State", "LatheSpec",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "LatheRunner",
            dependencies: [
                "LatheSpec", "LatheArchive",
                // Outbound requests on users' behalf (URL inputs, webhooks) pinned to checked addresses (dnsOverride).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                // The model's answers are read on the HTTP server's event loop (HotPath).
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            resources: [.copy("Resources/runner.py"), .copy("Resources/egress_forwarder.py")]
        ),
        // Everything the registry stores (DESIGN §2): all SQL, the blob stores and the queue, with
        // their own errors; the HTTP surfaces and the execution core sit above it.
        .target(
            name: "LatheStore",
            dependencies: [
                "LatheSpec", "LatheArchive", "LatheRunner",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                // The S3 blob store's requests (SigV4-signed, streamed).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The execution core (DESIGN §5–§6): intake, claims, decider, instance pool, fleet,
        // executor, completer, waiters, webhooks and the background services; no HTTP surface.
        .target(
            name: "LatheCore",
            dependencies: [
                // The embedded worker runs `lathe worker`'s code (LatheWorker) with an in-process source.
                "LatheSpec", "LatheArchive", "LatheRunner", "LatheStore", "LatheWorker",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .target(
            name: "LatheRegistry",
            dependencies: [
                "LatheSpec", "LatheArchive", "LatheRunner", "LatheStore", "LatheCore", "CMarkGFM",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                // No SQL client here: every statement lives in LatheStore, and the compiler keeps it so.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                // The S3 blob store's requests (SigV4-signed, streamed).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // The HTTP server's own event loop (RegistryApplication.httpLoop).
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // Streaming multipart parser for /v1/files (bodies up to 100 MB go to disk, not memory).
                .product(name: "MultipartKit", package: "multipart-kit"),
                // Server-rendered web pages (DESIGN §5): templates and static files ship as resources.
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            resources: [.copy("Resources/templates"), .copy("Resources/static")]
        ),
        .target(
            name: "LatheClient",
            dependencies: [
                "LatheSpec", "LatheArchive",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `lathe worker`: runs models for a registry that decides (DESIGN §6), over HTTP only.
        .target(
            name: "LatheWorker",
            dependencies: [
                "LatheSpec", "LatheArchive", "LatheRunner", "LatheClient",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        // `lathe init` templates live at the top of the repository (DESIGN §2).
        .target(
            name: "LatheTemplates",
            path: "Templates",
            exclude: [],
            resources: [.copy("python"), .copy("streaming"), .copy("ci")]
        ),
        // Stamps `lathe` with the VERSION file and the commit it is built from (`lathe --version`, /healthz, /metrics).
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .executableTarget(
            name: "lathe",
            dependencies: [
                "LatheSpec", "LatheArchive", "LatheRunner", "LatheTemplates", "LatheStore", "LatheCore", "LatheRegistry", "LatheClient", "LatheWorker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            plugins: ["BuildInfo"]
        ),
        .target(name: "LatheTestSupport", dependencies: ["LatheSpec"], path: "Tests/LatheTestSupport"),
        .testTarget(name: "LatheSpecTests", dependencies: ["LatheSpec", "LatheTestSupport"]),
        .testTarget(name: "LatheArchiveTests", dependencies: ["LatheArchive", "LatheSpec", "LatheTestSupport"]),
        .testTarget(name: "LatheRunnerTests", dependencies: [
            "LatheRunner", "LatheArchive", "LatheSpec", "LatheTestSupport", .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "LatheStoreTests", dependencies: [
            "LatheStore", "LatheSpec", "LatheArchive", "LatheTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "LatheCoreTests", dependencies: [
            "LatheCore", "LatheStore", "LatheSpec", "LatheArchive", "LatheRunner", "LatheWorker", "LatheTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "LatheRegistryTests", dependencies: [
            "LatheStore", "LatheCore", "LatheRegistry", "LatheSpec", "LatheArchive", "LatheTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Drives the built `lathe` executable as a user would.
        .testTarget(name: "EndToEndTests", dependencies: ["lathe", "LatheArchive", "LatheSpec", "LatheTestSupport"]),
    ]
)
