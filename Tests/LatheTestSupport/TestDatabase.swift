import Foundation
import LatheSpec

/// Where tests keep a registry's metadata. By default SQLite in the data folder, as `lathe serve`
/// does; with `LATHE_TEST_POSTGRES=postgres://USER@HOST:PORT` (set by `scripts/test` after it
/// starts a throwaway cluster) every data folder gets its own fresh PostgreSQL database, passed
/// to `lathe serve` and `lathe admin` as `LATHE_DATABASE_URL`.
public enum TestDatabase {
    /// The server URL without a database, when the tests run on PostgreSQL.
    public static let postgres: String? = {
        guard let url = ProcessInfo.processInfo.environment["LATHE_TEST_POSTGRES"], !url.isEmpty else { return nil }
        return url.hasSuffix("/") ? String(url.dropLast()) : url
    }()

    /// An S3 endpoint with bucket `lathe` (`LATHE_TEST_S3`, set by `scripts/test` after it starts
    /// SeaweedFS): every data folder then keeps its blobs under a prefix of its own there.
    public static let s3: String? = {
        guard let url = ProcessInfo.processInfo.environment["LATHE_TEST_S3"], !url.isEmpty else { return nil }
        return url
    }()

    /// The environment a `lathe` process working on `data` needs (empty on SQLite with files).
    public static func environment(forData data: String) throws -> [String: String] {
        var environment: [String: String] = [:]
        if let url = try databaseURL(forData: data) { environment["LATHE_DATABASE_URL"] = url }
        if let s3 {
            environment["LATHE_BLOBS"] = "s3://lathe/t" + String(fnv1a(URL(fileURLWithPath: data).standardizedFileURL.path), radix: 16)
            environment["LATHE_S3_ENDPOINT"] = s3
            environment["AWS_ACCESS_KEY_ID"] = "lathetest"
            environment["AWS_SECRET_ACCESS_KEY"] = "lathetestsecret"
        }
        return environment
    }

    /// A database of its own for the data folder `data`, created on first use.
    public static func databaseURL(forData data: String) throws -> String? {
        guard let postgres else { return nil }
        let name = "t" + String(fnv1a(URL(fileURLWithPath: data).standardizedFileURL.path), radix: 16)
        let lock = NSLock()
        lock.lock(); defer { lock.unlock() }
        if !created.contains(name) {
            // CREATE DATABASE fails harmlessly when it exists already.
            _ = try ChildProcess.run("psql", [postgres + "/postgres", "-qtAc", "CREATE DATABASE \(name)"])
            created.insert(name)
        }
        return "\(postgres)/\(name)"
    }

    nonisolated(unsafe) private static var created: Set<String> = []

    private static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// Bytes received so far by the uploads in progress of the registry on `data`: the files in
    /// `DATA/uploads/`, or in S3 the upload states the store keeps (read with curl's SigV4),
    /// the largest of them.
    public static func uploadedBytes(forData data: URL) -> Int {
        guard let s3, let blobs = (try? environment(forData: data.path))?["LATHE_BLOBS"] else {
            let uploads = data.appendingPathComponent("uploads")
            let names = (try? FileManager.default.contentsOfDirectory(atPath: uploads.path)) ?? []
            return names.compactMap { try? FileManager.default.attributesOfItem(atPath: uploads.appendingPathComponent($0).path)[.size] as? Int }.max() ?? 0
        }
        let prefix = blobs.dropFirst("s3://lathe/".count)
        func get(_ path: String) -> Data? {
            let result = try? ChildProcess.run("curl", ["-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "lathetest:lathetestsecret", s3 + path])
            return result.flatMap { $0.status == 0 ? $0.stdout : nil }
        }
        // `/` in a query value is signed as %2F: curl sends the query as written.
        guard let listing = get("/lathe?list-type=2&prefix=\(prefix)%2Fuploads%2F").map({ String(decoding: $0, as: UTF8.self) }) else { return 0 }
        var largest = 0
        for match in listing.matches(of: /<Key>([^<]+\/state)<\/Key>/) {
            guard let state = get("/lathe/" + match.1),
                  let object = try? JSONSerialization.jsonObject(with: state) as? [String: Any] else { continue }
            let parts = (object["parts"] as? [[String: Any]] ?? []).compactMap { $0["size"] as? Int }
            largest = max(largest, parts.reduce(object["tail"] as? Int ?? 0, +))
        }
        return largest
    }
}
