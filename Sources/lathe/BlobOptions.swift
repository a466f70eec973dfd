import ArgumentParser
import Foundation
import LatheRegistry
import LatheStore

/// Where a registry keeps its blobs: files under `--data` (the default), or a bucket of
/// S3-compatible object storage. Shared by `lathe serve` and `lathe admin`, which must agree.
struct BlobOptions: ParsableArguments {
    @Option(help: "Where blobs live: s3://BUCKET/PREFIX for S3-compatible object storage (env LATHE_BLOBS; default: files under --data). Credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
    var blobs: String?

    @Option(name: .customLong("s3-endpoint"), help: "The object storage's URL, addressed path-style, e.g. http://127.0.0.1:8333 (env LATHE_S3_ENDPOINT; default https://s3.REGION.amazonaws.com).")
    var s3Endpoint: String?

    @Option(name: .customLong("s3-region"), help: "The signing region (env LATHE_S3_REGION; default us-east-1).")
    var s3Region: String?

    /// The S3 store these options name, or nil for files under the data folder. `file` is the
    /// config file's mapping (`blobs:`, `s3_endpoint:`, `s3_region:`, `s3_access_key:`, `s3_secret_key:`).
    func store(runtime: URL, file: [String: Any] = [:]) throws -> S3BlobStore? {
        let environment = ProcessInfo.processInfo.environment
        guard let location = blobs ?? environment["LATHE_BLOBS"] ?? file["blobs"] as? String, !location.isEmpty else { return nil }
        let region = s3Region ?? environment["LATHE_S3_REGION"] ?? file["s3_region"] as? String ?? "us-east-1"
        let endpointText = s3Endpoint ?? environment["LATHE_S3_ENDPOINT"] ?? file["s3_endpoint"] as? String ?? "https://s3.\(region).amazonaws.com"
        guard let endpoint = URL(string: endpointText), endpoint.scheme == "http" || endpoint.scheme == "https" else {
            throw ValidationError("--s3-endpoint \(endpointText) is not an http(s) URL")
        }
        guard let accessKey = environment["AWS_ACCESS_KEY_ID"] ?? file["s3_access_key"] as? String,
              let secretKey = environment["AWS_SECRET_ACCESS_KEY"] ?? file["s3_secret_key"] as? String else {
            throw ValidationError("--blobs \(location) needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or s3_access_key and s3_secret_key in the config file)")
        }
        return try S3BlobStore(location: location, endpoint: endpoint, region: region,
                               credentials: .init(accessKey: accessKey, secretKey: secretKey), spool: runtime.appendingPathComponent("tmp/s3-spool"))
    }
}
