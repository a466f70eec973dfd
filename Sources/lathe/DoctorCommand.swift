import ArgumentParser
import Foundation
import LatheArchive
import LatheRegistry
import LatheStore
import LatheRunner
import LatheSpec
import Logging

/// `lathe doctor`: what this machine has of what Lathe needs, one line per check, each failing
/// one with what to do. Exits 1 when something required is missing, so scripts can gate on it.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this machine for what Lathe needs (libarchive, bubblewrap, python3, uv, disk; with --server its database and blob store).",
        discussion: "Prints one line per check: ok, warn (works, but worse) or FAIL (required), with what to do. Exit status 1 when a required check fails."
    )

    @Flag(help: "Also check what `lathe serve` needs: the database and blob store it is configured with (flags, environment or --config, as serve reads them).")
    var server = false

    @Option(help: "The server's data folder (env LATHE_DATA; default ./lathe-data).")
    var data: String?

    @Option(help: "The server's PostgreSQL URL (env LATHE_DATABASE_URL; default SQLite in the data folder).")
    var database: String?

    @Option(help: "The server's YAML config file (data:, database:, blobs:, s3_endpoint:, …).")
    var config: String?

    @OptionGroup var blobOptions: BlobOptions

    func run() async throws {
        var checks = Self.machineChecks()
        if server || database != nil || config != nil || blobOptions.blobs != nil {
            checks += await serverChecks()
        }
        let width = checks.map(\.name.count).max() ?? 0
        for check in checks { print(check.line(nameWidth: width)) }
        let failed = checks.filter { $0.outcome == .failed }
        if failed.isEmpty {
            print("\nLathe has what it needs here.")
        } else {
            print("\n\(failed.count) required check\(failed.count == 1 ? "" : "s") failed: \(failed.map(\.name).joined(separator: ", ")).")
            throw ExitCode(1)
        }
    }

    // MARK: The machine

    static func machineChecks() -> [DoctorCheck] {
        [libarchive(), bubblewrap(), python(), installer(), disk(LocalStore.home, name: "disk (LATHE_HOME)")]
    }

    static func libarchive() -> DoctorCheck {
        let details = LibArchive.details
        guard LibArchive.hasGzip else {
            return DoctorCheck("libarchive", .failed, "\(details) has no zlib support (layers are gzip)", fix: "install Debian's libarchive13")
        }
        return DoctorCheck("libarchive", .ok, details)
    }

    static func bubblewrap() -> DoctorCheck {
        let mode = ProcessInfo.processInfo.environment["LATHE_SANDBOX"] ?? "auto"
        guard let bwrap = try? ChildProcess.resolve("bwrap") else {
            if mode == "none" {
                return DoctorCheck("bubblewrap", .warning, "not installed; LATHE_SANDBOX=none runs models unconfined",
                                   fix: "fine for your own models; a registry others push to needs it: apt-get install bubblewrap")
            }
            return DoctorCheck("bubblewrap", .failed, "bwrap is not on PATH: models and their environment builds cannot be sandboxed",
                               fix: "apt-get install bubblewrap (or LATHE_SANDBOX=none to run your own models unconfined)")
        }
        let version = firstLine(try? ChildProcess.run(bwrap, ["--version"])) ?? "bubblewrap"
        let who = getuid() == 0 ? "as root" : "as an unprivileged user (user namespaces)"
        if let problem = Sandbox.trial(bwrap) {
            let fix = getuid() == 0
                ? "root needs CAP_SYS_ADMIN for namespaces: run outside this container or give it that capability"
                : "enable unprivileged user namespaces (Debian: sysctl kernel.unprivileged_userns_clone=1; Ubuntu 24.04: an AppArmor profile for bwrap or sysctl kernel.apparmor_restrict_unprivileged_userns=0)"
            let underSystemd = problem.contains("proc")
                ? "; under systemd, drop ProtectKernelTunables and ProtectKernelLogs (their covers inside /proc forbid the sandbox's own /proc)" : ""
            return DoctorCheck("bubblewrap", .failed, "\(version) at \(bwrap) cannot make namespaces \(who): \(problem)", fix: fix + underSystemd)
        }
        let note = mode == "none" ? "; but LATHE_SANDBOX=none turns sandboxing off" : ""
        return DoctorCheck("bubblewrap", mode == "none" ? .warning : .ok, "\(version) at \(bwrap): sandboxing works \(who)\(note)")
    }

    static func python() -> DoctorCheck {
        guard let python = try? ChildProcess.resolve("python3"), let version = firstLine(try? ChildProcess.run(python, ["--version"])) else {
            return DoctorCheck("python3", .failed, "python3 is not on PATH: models' predict.py cannot run", fix: "apt-get install python3")
        }
        let numbers = version.split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
        guard numbers.count >= 2, (numbers[0], numbers[1]) >= (3, 9) else {
            return DoctorCheck("python3", .failed, "\(version) at \(python) is older than 3.9", fix: "install Python 3.9 or newer")
        }
        return DoctorCheck("python3", .ok, "\(version) at \(python)")
    }

    /// uv builds environments; without it `python3 -m venv` and pip do, slower.
    static func installer() -> DoctorCheck {
        if let uv = try? ChildProcess.resolve("uv"), let version = firstLine(try? ChildProcess.run(uv, ["--version"])) {
            return DoctorCheck("uv", .ok, "\(version) at \(uv)")
        }
        let venv = (try? ChildProcess.resolve("python3")).flatMap { try? ChildProcess.run($0, ["-c", "import venv, ensurepip"]) }
        guard venv?.status == 0 else {
            return DoctorCheck("uv", .failed, "neither uv nor python3's venv module is available: model environments cannot be built",
                               fix: "pip install uv (or apt-get install python3-venv)")
        }
        return DoctorCheck("uv", .warning, "not on PATH: environments are built with python3 -m venv and pip (slower)", fix: "pip install uv")
    }

    /// Free space where `folder` is (or would be made).
    static func disk(_ folder: URL, name: String) -> DoctorCheck {
        var existing = folder.standardizedFileURL
        while !FileManager.default.fileExists(atPath: existing.path), existing.path != "/" { existing.deleteLastPathComponent() }
        guard let attributes = try? FileManager.default.attributesOfFileSystem(forPath: existing.path),
              let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value else {
            return DoctorCheck(name, .warning, "cannot read the free space of \(existing.path)")
        }
        let gib = Double(free) / Double(1 << 30)
        let text = String(format: "%.1f GiB free at %@", gib, folder.path)
        if gib < 1 { return DoctorCheck(name, .failed, text, fix: "free space there or point LATHE_HOME / --data at a larger disk") }
        if gib < 5 { return DoctorCheck(name, .warning, text + " (environments and weights take gigabytes)", fix: "free space or use a larger disk") }
        return DoctorCheck(name, .ok, text)
    }

    static func firstLine(_ result: ChildProcess.Result?) -> String? {
        guard let result, result.status == 0 else { return nil }
        let text = String(decoding: result.stdout + result.stderr, as: UTF8.self)
        return text.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) }
    }

    // MARK: The server's stores

    func serverChecks() async -> [DoctorCheck] {
        let settings: ServeCommand.Settings
        do {
            settings = try ServeCommand.Settings(data: data, database: database, config: config)
        } catch {
            return [DoctorCheck("config", .failed, "\(error)", fix: "check the path and its YAML")]
        }
        let dataFolder = URL(fileURLWithPath: settings.data)
        var checks: [DoctorCheck] = []
        if let url = settings.database, !url.isEmpty {
            checks.append(await Self.postgres(url))
        } else {
            checks.append(Self.writable(dataFolder, name: "database", what: "SQLite at \(dataFolder.appendingPathComponent("registry.sqlite").path)"))
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-doctor-\(getpid())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        do {
            if let store = try blobOptions.store(runtime: scratch, file: settings.file) {
                do {
                    try await store.check()
                    checks.append(DoctorCheck("blob store", .ok, "\(store.location) at \(store.endpoint.absoluteString) answers"))
                } catch {
                    checks.append(DoctorCheck("blob store", .failed, "\(error)", fix: "check the endpoint, bucket and credentials"))
                }
            } else {
                checks.append(Self.writable(dataFolder, name: "blob store", what: "files under \(dataFolder.appendingPathComponent("blobs").path)"))
                checks.append(Self.disk(dataFolder, name: "disk (data)"))
            }
        } catch {
            checks.append(DoctorCheck("blob store", .failed, "\(error)", fix: "see lathe serve --help for --blobs, --s3-endpoint and credentials"))
        }
        return checks
    }

    static func postgres(_ url: String) async -> DoctorCheck {
        var logger = Logger(label: "lathe.doctor")
        logger.logLevel = .critical
        let place = URLComponents(string: url).map { "\($0.host ?? "?"):\($0.port ?? 5432)" } ?? "?"
        do {
            let database = try await RegistryDatabase.open(postgres: url, logger: logger, connectionsPerLoop: 1, migrate: false)
            let versions = try await database.schemaVersions()
            try? await database.close()
            if versions.applied > versions.known {
                return DoctorCheck("database", .failed, "PostgreSQL at \(place) has schema \(versions.applied), newer than this build knows (\(versions.known))",
                                   fix: "run the newer lathe that migrated it")
            }
            let state = versions.applied == versions.known ? "schema up to date (\(versions.known))"
                : "schema \(versions.applied) of \(versions.known): lathe serve migrates it at start"
            return DoctorCheck("database", .ok, "PostgreSQL at \(place), \(state)")
        } catch {
            return DoctorCheck("database", .failed, "\(error)", fix: "start PostgreSQL or correct the URL (postgres://USER:PASSWORD@HOST:PORT/DB)")
        }
    }

    /// Whether `folder` exists or can be made, and takes a file.
    static func writable(_ folder: URL, name: String, what: String) -> DoctorCheck {
        let probe = folder.appendingPathComponent(".lathe-doctor-\(getpid())")
        let existed = FileManager.default.fileExists(atPath: folder.path)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data().write(to: probe)
            try FileManager.default.removeItem(at: probe)
            if !existed { try? FileManager.default.removeItem(at: folder) }
            return DoctorCheck(name, .ok, "\(what) (\(existed ? "writable" : "will be created"))")
        } catch {
            return DoctorCheck(name, .failed, "\(what): \(folder.path) is not writable by this user", fix: "create it for the server's user, or pass --data")
        }
    }
}

/// One line of `lathe doctor`'s report.
struct DoctorCheck {
    enum Outcome { case ok, warning, failed }
    var name: String
    var outcome: Outcome
    var detail: String
    var fix: String?

    init(_ name: String, _ outcome: Outcome, _ detail: String, fix: String? = nil) {
        self.name = name
        self.outcome = outcome
        self.detail = detail
        self.fix = fix
    }

    func line(nameWidth: Int) -> String {
        let mark = switch outcome { case .ok: "ok  "; case .warning: "warn"; case .failed: "FAIL" }
        let padded = name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
        return "\(mark)  \(padded)  \(detail)" + (fix.map { " -> \($0)" } ?? "")
    }
}
