import Crypto
import Foundation
import LatheArchive
import LatheSpec

/// A Python environment built once per distinct (Python version, requirements) and cached under
/// `$LATHE_HOME/envs/<hash>`: with uv when it is installed, else `python -m venv` and pip.
public struct PythonEnvironment: Sendable, Codable {
    /// The environment's folder.
    public var root: URL
    /// `bin/python` inside it.
    public var python: URL
    /// The interpreter installation the venv links to (bound read-only into the sandbox).
    public var basePrefix: String

    static let marker = "lathe-env.json"

    /// The name of the environment folder for `requirements` under Python `version`.
    static func key(python version: PythonVersion, requirements: [String]) -> String {
        let key = "python=\(version)\n" + requirements.joined(separator: "\n")
        return String(ByteEncoding.hex(SHA256.hash(data: Data(key.utf8))).prefix(20))
    }

    /// The environment for `requirements` under Python `version` when one was built already
    /// (nothing is built or run).
    public static func existing(python version: PythonVersion, requirements: [String], home: URL) -> PythonEnvironment? {
        let marker = home.appendingPathComponent("envs").appendingPathComponent(key(python: version, requirements: requirements))
            .appendingPathComponent(Self.marker)
        return FileManager.default.contents(atPath: marker.path).flatMap { try? JSONDecoder().decode(PythonEnvironment.self, from: $0) }
    }

    /// Its `site-packages` folder (`lib/pythonX.Y/site-packages`).
    public func sitePackages(_ version: PythonVersion) -> URL {
        root.appendingPathComponent("lib/python\(version.majorMinor)/site-packages")
    }

    /// The environment for `requirements` under Python `version`, creating it if needed with
    /// `build` (its sandbox, limits and requirement policy). `log` receives installer output as
    /// it comes, so a slow first build is not silent. Blocking: call it off the cooperative pool.
    public static func ensure(python version: PythonVersion, requirements: [String], home: URL, build: EnvironmentBuild,
                              log: @escaping @Sendable (String) -> Void = { _ in }) throws -> PythonEnvironment {
        let problems = build.policy.problems(requirements)
        guard problems.isEmpty else {
            throw Diagnostic(nil, problems.joined(separator: "\n"), fix: "list packages from the package index by name in python_packages or requirements")
        }
        let hash = key(python: version, requirements: requirements)
        let envs = home.appendingPathComponent("envs")
        let root = envs.appendingPathComponent(hash)
        try FileManager.default.createDirectory(at: envs, withIntermediateDirectories: true)

        // One builder at a time per environment; others wait and then reuse it.
        let lockFD = open(envs.appendingPathComponent("\(hash).lock").path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { if lockFD >= 0 { close(lockFD) } }
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        let markerURL = root.appendingPathComponent(marker)
        if let data = FileManager.default.contents(atPath: markerURL.path),
           let environment = try? JSONDecoder().decode(PythonEnvironment.self, from: data) {
            return environment
        }
        try? FileManager.default.removeItem(at: root)
        log("Creating Python \(version) environment for \(requirements.isEmpty ? "no packages" : requirements.joined(separator: " "))…\n")
        // A private package cache per build: a shared one would let one model's build plant files
        // that another model's environment then installs.
        let cache = envs.appendingPathComponent(".cache-\(hash)")
        defer { try? FileManager.default.removeItem(at: cache) }
        let basePrefix: String
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            basePrefix = try create(root: root, cache: cache, version: version, requirements: requirements, build: build, log: log)
        } catch {
            try? FileManager.default.removeItem(at: root)
            throw error
        }
        let environment = PythonEnvironment(root: root, python: root.appendingPathComponent("bin/python"), basePrefix: basePrefix)
        try JSONEncoder().encode(environment).write(to: markerURL, options: .atomic)
        return environment
    }

    /// Creates the environment in `root` (which exists) and returns its interpreter's base prefix.
    /// Only trusted programs run outside the sandbox (finding the interpreter); the venv and the
    /// install, where a package's build code runs, run inside it.
    private static func create(root: URL, cache: URL, version: PythonVersion, requirements: [String], build: EnvironmentBuild,
                               log: @escaping @Sendable (String) -> Void) throws -> String {
        let requirementsFile = cache.appendingPathComponent("requirements.txt")
        try Data(requirements.joined(separator: "\n").utf8).write(to: requirementsFile)
        defer { try? FileManager.default.removeItem(at: requirementsFile) }
        let uv = (try? ChildProcess.resolve("uv")).flatMap(realExecutable)
        let python = try interpreter(version, uv: uv)
        let probe = try ChildProcess.run(python, ["-c", "import sys; print(sys.base_prefix)"])
        let basePrefix = String(decoding: probe.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        var environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
                           // Never download interpreters, never read config files a model could ship.
                           "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1", "UV_CACHE_DIR": cache.path,
                           "PIP_CACHE_DIR": cache.path, "UV_LINK_MODE": "copy", "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"]
        for key in ["UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                    "SSL_CERT_FILE"] {
            if let value = ProcessInfo.processInfo.environment[key] { environment[key] = value }
        }
        let readable = [basePrefix, uv].compactMap { $0 } + [URL(fileURLWithPath: python).deletingLastPathComponent().path]
        func step(_ command: [String], failure: String, fix: String) throws {
            let (status, tail) = try build.run(command, python: python, environment: environment, writable: [root, cache], readable: readable, log: log)
            guard status == 0 else { throw EnvironmentBuildFailure(failure: failure, reason: Self.reason(tail), fix: fix) }
        }
        let fix = "check python_packages/requirements in lathe.yaml"
        if let uv {
            try step([uv, "venv", "--quiet", "--allow-existing", "--python", python, root.path], failure: "cannot create a Python \(version) environment",
                     fix: "install Python \(version), or set python: in lathe.yaml to an installed version")
            if !requirements.isEmpty {
                try step([uv, "pip", "install", "--python", root.appendingPathComponent("bin/python").path, "-r", requirementsFile.path],
                         failure: "installing the model's Python packages failed", fix: fix)
            }
            return basePrefix
        }
        try step([python, "-m", "venv", root.path], failure: "python -m venv failed", fix: "install python3-venv, or install uv (`pip install uv`)")
        if !requirements.isEmpty {
            try step([root.appendingPathComponent("bin/pip").path, "install", "--quiet", "-r", requirementsFile.path],
                     failure: "pip install failed", fix: fix)
        }
        return basePrefix
    }

    /// What went wrong, in one line, from a failed installer's output. The whole output was
    /// already shown as it ran (the build log), so the error repeats only the installer's own
    /// verdict (uv's `error:`/`×` with its `cause:`/`Caused by:`/`╰─▶` lines, pip's `ERROR:`), the
    /// last other line (where a package's failed build says why) and the installer's hints,
    /// without their prefixes.
    static func reason(_ output: String) -> String {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let verdicts = ["error:", "cause:", "caused by:", "× ", "├─▶ ", "╰─▶ "]
        let isVerdict = { (line: String) in verdicts.contains { line.lowercased().hasPrefix($0) } }
        let isHint = { (line: String) in line.lowercased().hasPrefix("hint:") }
        var chosen = Array(lines.filter(isVerdict).prefix(6))
        if let last = lines.last(where: { !isHint($0) }), !chosen.contains(last) { chosen.append(last) }
        chosen += lines.filter(isHint).prefix(2)
        let text = chosen.map { line in
            for prefix in ["error:", "× ", "├─▶ ", "╰─▶ "] where line.lowercased().hasPrefix(prefix) {
                return String(line.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
            }
            return line
        }.joined(separator: "; ")
        return text.isEmpty ? "the installer printed nothing" : text
    }

    /// The real program behind a version manager's shim (pyenv's are shell scripts that would
    /// need the manager inside the sandbox).
    static func realExecutable(_ path: String) -> String? {
        guard path.contains("/shims/") else { return URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let found = try? ChildProcess.run("pyenv", ["which", name]), found.status == 0 else { return nil }
        let real = String(decoding: found.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return real.isEmpty ? nil : real
    }

    /// The interpreter for `version`, found only among the operator's: the system interpreter uv
    /// finds (never a download, a virtual environment or a project's pin: it runs in `/` with
    /// `--system --no-project`), else `python3.N` on the server's PATH, else `python3` when its
    /// version matches; always a real binary, never a shim. `version` is numbers only
    /// (``PythonVersion``), so nothing a model's author wrote can name the program run here.
    private static func interpreter(_ version: PythonVersion, uv: String?) throws -> String {
        if let uv, let found = try? ChildProcess.run(uv, ["python", "find", "--system", "--no-project", version.description],
                                                     environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                                                                   "HOME": NSHomeDirectory(), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1"],
                                                     directory: URL(fileURLWithPath: "/")),
           found.status == 0 {
            let path = String(decoding: found.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if path.hasPrefix("/"), let real = realExecutable(path) { return real }
        }
        if let exact = (try? ChildProcess.onPath("python\(version.majorMinor)")).flatMap(realExecutable) { return exact }
        let python3 = try ChildProcess.onPath("python3")
        let probe = try ChildProcess.run(python3, ["-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"])
        let lines = String(decoding: probe.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
        let found = lines.first ?? "?"
        guard PythonVersion(found).map({ $0.minor == version.minor }) == true else {
            throw Diagnostic(nil, "Python \(version) is not installed (python3 is \(found))",
                             fix: "install it, or set python: \"\(found)\" in lathe.yaml")
        }
        return lines.count > 1 ? lines[1] : python3
    }
}

/// A Python environment that could not be built. Its description (a prediction's `error`, a
/// boot failure) carries the installer's verdict; ``shownAbove`` is the same without it, for a
/// terminal that has just streamed the installer's whole output, so nothing is printed twice.
public struct EnvironmentBuildFailure: Error, Sendable, CustomStringConvertible {
    /// What failed ("installing the model's Python packages failed").
    public var failure: String
    /// The installer's own error lines, in one line.
    public var reason: String
    /// What to do about it.
    public var fix: String

    public var description: String { Diagnostic(nil, "\(failure): \(reason)", fix: fix).description }
    public var shownAbove: String { Diagnostic(nil, "\(failure) (the installer's output is above)", fix: fix).description }
}
