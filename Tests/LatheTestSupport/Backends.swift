import Foundation

/// Which backends the backend suites (StoreSuite, BlobStoreSuite) run against here. A backend
/// that is not configured is left out of their arguments and reported by its own marker test
/// as skipped, never passed; where every backend must run (`CI=true`, or
/// `LATHE_TEST_REQUIRE_BACKENDS=1`, which `scripts/test` sets once it has started them) the
/// marker runs and fails instead.
public enum Backends {
    /// Whether a missing backend is a failure rather than a skip.
    public static var required: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["CI"] == "true" || environment["LATHE_TEST_REQUIRE_BACKENDS"] == "1"
    }

    /// Whether PostgreSQL is configured (`LATHE_TEST_POSTGRES`).
    public static var postgres: Bool { TestDatabase.postgres != nil }

    /// Whether an S3 endpoint is configured (`LATHE_TEST_S3`).
    public static var s3: Bool { TestDatabase.s3 != nil }
}
