import Foundation
import LatheSpec

/// Saved registry logins: `$LATHE_HOME/credentials.json`, mode 0600. `LATHE_TOKEN` and
/// `LATHE_REGISTRY` take precedence, for CI.
public struct Credentials: Codable, Sendable {
    public struct Login: Codable, Sendable {
        public var username: String
        public var token: String

        public init(username: String, token: String) {
            self.username = username
            self.token = token
        }
    }

    public var registries: [String: Login] = [:]
    /// The registry `lathe login` last signed in to.
    public var current: String?

    public init() {}

    public static func url(home: URL) -> URL { home.appendingPathComponent("credentials.json") }

    public static func load(home: URL) -> Credentials {
        guard let data = FileManager.default.contents(atPath: url(home: home).path) else { return Credentials() }
        return (try? JSONDecoder().decode(Credentials.self, from: data)) ?? Credentials()
    }

    public func save(home: URL) throws {
        let target = Self.url(home: home)
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let temporary = home.appendingPathComponent(".credentials-\(UUID().uuidString)")
        // Created 0600 before any secret is written to it.
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw Diagnostic(nil, "cannot write \(target.path)", fix: "check that \(home.path) is writable")
        }
        let handle = try FileHandle(forWritingTo: temporary)
        try handle.write(contentsOf: try JSON.pretty(self))
        try handle.close()
        guard rename(temporary.path, target.path) == 0 else { throw Diagnostic(nil, "cannot write \(target.path)") }
    }

    /// The registry and token to use: `--registry`, else LATHE_REGISTRY, else the last login.
    public static func resolve(registry: String?, home: URL) throws -> (url: String, token: String?) {
        let environment = ProcessInfo.processInfo.environment
        let saved = load(home: home)
        guard let url = (registry ?? environment["LATHE_REGISTRY"] ?? saved.current).map(normalize) else {
            throw Diagnostic(nil, "no registry given", fix: "pass --registry http://host:port, set LATHE_REGISTRY, or run `lathe login URL`")
        }
        return (url, environment["LATHE_TOKEN"] ?? saved.registries[url]?.token)
    }

    /// `host:port` → `http://host:port`, without a trailing slash.
    public static func normalize(_ text: String) -> String {
        var url = text.contains("://") ? text : "http://" + text
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}
