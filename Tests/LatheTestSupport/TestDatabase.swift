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

    /// The environment a `lathe` process working on `data` needs (empty on SQLite).
    public static func environment(forData data: String) throws -> [String: String] {
        guard let url = try databaseURL(forData: data) else { return [:] }
        return ["LATHE_DATABASE_URL": url]
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
}
