import Crypto
import Foundation
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

    /// The environment for `requirements` under Python `version`, creating it if needed.
    /// `log` receives installer output, so a slow first build is not silent.
    public static func ensure(python version: String, requirements: [String], home: URL,
                              log: (String) -> Void = { _ in }) throws -> PythonEnvironment {
        let key = "python=\(version)\n" + requirements.joined(separator: "\n")
        let hash = SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined().prefix(20)
        let envs = home.appendingPathComponent("envs")
        let root = envs.appendingPathComponent(String(hash))
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
        do {
            try create(root: root, version: version, requirements: requirements, log: log)
        } catch {
            try? FileManager.default.removeItem(at: root)
            throw error
        }
        let python = root.appendingPathComponent("bin/python")
        let probe = try ChildProcess.run(python.path, ["-c", "import sys; print(sys.base_prefix)"])
        let environment = PythonEnvironment(root: root, python: python,
                                            basePrefix: String(decoding: probe.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        try JSONEncoder().encode(environment).write(to: markerURL, options: .atomic)
        return environment
    }

    private static func create(root: URL, version: String, requirements: [String], log: (String) -> Void) throws {
        let requirementsFile = root.deletingLastPathComponent().appendingPathComponent("\(root.lastPathComponent).requirements.txt")
        try Data(requirements.joined(separator: "\n").utf8).write(to: requirementsFile)
        defer { try? FileManager.default.removeItem(at: requirementsFile) }
        var environment = ProcessInfo.processInfo.environment
        // Never download interpreters at run time: use one that is installed.
        environment["UV_PYTHON_DOWNLOADS"] = "never"
        if let uv = try? ChildProcess.resolve("uv") {
            let venv = try ChildProcess.run(uv, ["venv", "--quiet", "--python", version, root.path], environment: environment)
            guard venv.status == 0 else {
                throw Diagnostic(nil, "cannot create a Python \(version) environment: \(venv.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))",
                                 fix: "install Python \(version), or set python: in lathe.yaml to an installed version (`uv python list --only-installed`)")
            }
            if !requirements.isEmpty {
                let install = try ChildProcess.run(uv, ["pip", "install", "--quiet", "--python", root.appendingPathComponent("bin/python").path,
                                                        "-r", requirementsFile.path], environment: environment)
                log(install.stderrText)
                guard install.status == 0 else {
                    throw Diagnostic(nil, "installing the model's Python packages failed:\n\(install.stderrText)",
                                     fix: "check python_packages/requirements in lathe.yaml")
                }
            }
            return
        }
        let python = try interpreter(version)
        let venv = try ChildProcess.run(python, ["-m", "venv", root.path])
        guard venv.status == 0 else {
            throw Diagnostic(nil, "python -m venv failed: \(venv.stderrText)", fix: "install python3-venv, or install uv (`pip install uv`)")
        }
        if !requirements.isEmpty {
            let install = try ChildProcess.run(root.appendingPathComponent("bin/pip").path, ["install", "--quiet", "-r", requirementsFile.path])
            log(install.stderrText)
            guard install.status == 0 else {
                throw Diagnostic(nil, "pip install failed:\n\(install.stderrText)", fix: "check python_packages/requirements in lathe.yaml")
            }
        }
    }

    /// `pythonX.Y` on PATH, or `python3` when its version matches.
    private static func interpreter(_ version: String) throws -> String {
        if let exact = try? ChildProcess.resolve("python\(version)") { return exact }
        let python3 = try ChildProcess.resolve("python3")
        let probe = try ChildProcess.run(python3, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        let found = String(decoding: probe.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard version.hasPrefix(found) else {
            throw Diagnostic(nil, "Python \(version) is not installed (python3 is \(found))",
                             fix: "install it, or set python: \"\(found)\" in lathe.yaml")
        }
        return python3
    }
}
