import Crypto
import Foundation
import LatheArchive
import LatheSpec

/// A model's `system_packages:`: Debian packages and the dependencies this machine lacks,
/// fetched with the machine's apt sources and unpacked into a prefix of their own
/// (`$LATHE_HOME/sysroots/<hash>`), without root and without installing anything on the host.
/// The download and the unpacking run inside the build sandbox, out through the build's proxy
/// (the apt sources' hosts are the operator's infrastructure, like the package index); the model
/// then sees the prefix read-only, its `bin` folders on `PATH` and its `lib` folders on
/// `LD_LIBRARY_PATH`. One prefix per package set, reused by every model that lists the same.
public enum SystemPackages {
    static let marker = "lathe-sysroot.json"

    /// The prefix for `packages` (nil when there are none), made if needed.
    public static func ensure(_ packages: [String], home: URL, build: EnvironmentBuild,
                              log: @escaping @Sendable (String) -> Void = { _ in }) throws -> URL? {
        guard !packages.isEmpty else { return nil }
        let names = Array(Set(packages)).sorted()
        if let bad = names.first(where: { !SpecParser.isDebianPackageName($0) }) {
            throw Diagnostic(nil, "system_packages: \"\(bad)\" is not a Debian package name", fix: "list packages as apt knows them")
        }
        let hash = ByteEncoding.hex(SHA256.hash(data: Data(names.joined(separator: "\n").utf8))).prefix(20)
        let sysroots = home.appendingPathComponent("sysroots")
        let root = sysroots.appendingPathComponent(String(hash))
        try FileManager.default.createDirectory(at: sysroots, withIntermediateDirectories: true)
        let lockFD = open(sysroots.appendingPathComponent("\(hash).lock").path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { if lockFD >= 0 { close(lockFD) } }
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        if FileManager.default.fileExists(atPath: root.appendingPathComponent(marker).path) { return root }
        try? FileManager.default.removeItem(at: root)
        let downloads = sysroots.appendingPathComponent(".downloads-\(hash)")
        try? FileManager.default.removeItem(at: downloads)
        defer { try? FileManager.default.removeItem(at: downloads) }
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
            try fetch(names, into: root, downloads: downloads, build: build, log: log)
            try JSONEncoder().encode(names).write(to: root.appendingPathComponent(marker), options: .atomic)
        } catch {
            try? FileManager.default.removeItem(at: root)
            throw error
        }
        return root
    }

    /// `PATH` and `LD_LIBRARY_PATH` entries of a prefix.
    public static func paths(_ root: String) -> (bin: [String], lib: [String]) {
        var uts = utsname()
        uname(&uts)
        let machine = withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let triplet = machine == "aarch64" ? "aarch64-linux-gnu" : "\(machine)-linux-gnu"
        return (["usr/local/bin", "usr/bin", "bin", "usr/games"].map { root + "/" + $0 },
                ["usr/lib/\(triplet)", "lib/\(triplet)", "usr/lib", "lib"].map { root + "/" + $0 })
    }

    private static func fetch(_ names: [String], into root: URL, downloads: URL, build: EnvironmentBuild,
                              log: @escaping @Sendable (String) -> Void) throws {
        guard let aptCache = try? ChildProcess.resolve("apt-cache"), let aptGet = try? ChildProcess.resolve("apt-get"),
              let dpkgDeb = try? ChildProcess.resolve("dpkg-deb"), let dpkgQuery = try? ChildProcess.resolve("dpkg-query") else {
            throw Diagnostic(nil, "system_packages (\(names.joined(separator: ", "))) needs apt, and this machine has none",
                             fix: "run the model on a Debian or Ubuntu machine, or remove system_packages from lathe.yaml")
        }
        // Which names apt knows (reading the machine's package lists; nothing is fetched).
        for name in names {
            let known = try ChildProcess.run(aptCache, ["show", "--no-all-versions", "--", name])
            guard known.status == 0, !known.stdout.isEmpty else {
                throw Diagnostic(nil, "system package \"\(name)\" was not found in this machine's apt sources",
                                 fix: "check its name (apt-cache search \(name)), or run apt-get update on the machine")
            }
        }
        // Its dependencies, less what the machine has already (the sandbox sees the host's /usr).
        let closure = try ChildProcess.run(aptCache, ["depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                                                      "--no-breaks", "--no-replaces", "--no-enhances", "--"] + names)
        let installedList = try ChildProcess.run(dpkgQuery, ["-W", "-f", "${db:Status-Abbrev} ${Package}\n"])
        let installed = Set(String(decoding: installedList.stdout, as: UTF8.self).split(separator: "\n").compactMap { line -> String? in
            let parts = line.split(separator: " ")
            return parts.count == 2 && parts[0].hasPrefix("ii") ? String(parts[1]) : nil
        })
        let wanted = String(decoding: closure.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
            .filter { !$0.hasPrefix(" ") && !$0.hasPrefix("<") && SpecParser.isDebianPackageName($0) }
        let missing = Array(Set(wanted).subtracting(installed)).sorted()
        log("System packages \(names.joined(separator: " ")): fetching \(missing.isEmpty ? "nothing (the machine has them)" : missing.joined(separator: " "))…\n")
        guard !missing.isEmpty else { return }
        let python = ChildProcess.python
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"]
        // apt reads its configuration, the package lists and dpkg's status (read-only, inside).
        let aptState = ["/etc/apt", "/var/lib/apt/lists", "/var/lib/dpkg", "/usr/share/keyrings", "/etc/ssl/certs"]
            .filter { FileManager.default.fileExists(atPath: $0) }
        let download = try build.run([aptGet, "download", "-q", "-o", "Dir::Cache=" + downloads.path, "--"] + missing, python: python,
                                     environment: environment, writable: [downloads], readable: aptState, hosts: aptHosts(), log: log)
        guard download.status == 0 else {
            throw Diagnostic(nil, "fetching system packages (\(missing.joined(separator: ", "))) failed: \(download.tail.split(separator: "\n").last ?? "")",
                             fix: "check system_packages in lathe.yaml and the machine's apt sources")
        }
        let debs = try FileManager.default.contentsOfDirectory(atPath: downloads.path).filter { $0.hasSuffix(".deb") }.sorted()
        for deb in debs {
            let unpacked = try build.run([dpkgDeb, "-x", downloads.appendingPathComponent(deb).path, root.path], python: python,
                                         environment: environment, writable: [root], readable: [downloads.path], log: log)
            guard unpacked.status == 0 else {
                throw Diagnostic(nil, "unpacking \(deb) failed: \(unpacked.tail.split(separator: "\n").last ?? "")", fix: "check system_packages in lathe.yaml")
            }
        }
    }

    /// The hosts of this machine's apt sources (one-line and deb822 formats).
    static func aptHosts() -> Set<String> {
        var hosts = Set<String>()
        var files = ["/etc/apt/sources.list"]
        let folder = "/etc/apt/sources.list.d"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasSuffix(".list") || name.hasSuffix(".sources") {
            files.append(folder + "/" + name)
        }
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
                for word in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) where word.contains("://") {
                    if let host = URLComponents(string: String(word))?.host?.lowercased() { hosts.insert(host) }
                }
            }
        }
        return hosts
    }
}
