/// Which build of Lathe a server runs, so operators can tell replicas and releases apart:
/// `/healthz` answers it and `/metrics` carries it as `lathe_build_info{version,commit} 1`.
public struct BuildVersion: Codable, Sendable, Equatable {
    /// The release, from the repository's `VERSION` file.
    public var version: String
    /// The commit the binary was built from ("unknown" outside a git checkout; "-modified" when
    /// the sources differed from it).
    public var commit: String

    public init(version: String, commit: String) {
        self.version = version
        self.commit = commit
    }

    public static let unknown = BuildVersion(version: "unknown", commit: "unknown")
}

/// The body of `/healthz`.
struct HealthReport: Codable, Sendable {
    var status = "ok"
    var version: String
    var commit: String
}
