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
    ],
    targets: [
        // libarchive writes and reads the deterministic code layer (zlib through its gzip filter).
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        .target(
            name: "LatheSpec",
            dependencies: [.product(name: "Yams", package: "Yams")],
            resources: [.copy("Resources/inspect_predictor.py")]
        ),
        .target(
            name: "LatheArchive",
            dependencies: [
                "CArchive", "LatheSpec",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "LatheRunner",
            dependencies: ["LatheSpec", "LatheArchive"],
            resources: [.copy("Resources/runner.py")]
        ),
        // `lathe init` templates live at the top of the repository (DESIGN §2).
        .target(
            name: "LatheTemplates",
            path: "Templates",
            exclude: [],
            resources: [.copy("python"), .copy("streaming")]
        ),
        .executableTarget(
            name: "lathe",
            dependencies: [
                "LatheSpec", "LatheArchive", "LatheRunner", "LatheTemplates",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "LatheTestSupport", dependencies: ["LatheSpec"], path: "Tests/LatheTestSupport"),
        .testTarget(name: "LatheSpecTests", dependencies: ["LatheSpec", "LatheTestSupport"]),
        .testTarget(name: "LatheArchiveTests", dependencies: ["LatheArchive", "LatheSpec", "LatheTestSupport"]),
        .testTarget(name: "LatheRunnerTests", dependencies: ["LatheRunner", "LatheArchive", "LatheSpec", "LatheTestSupport"]),
        // Drives the built `lathe` executable as a user would.
        .testTarget(name: "EndToEndTests", dependencies: ["lathe", "LatheArchive", "LatheSpec", "LatheTestSupport"]),
    ]
)
