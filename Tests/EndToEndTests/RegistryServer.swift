import Foundation
import LatheSpec
import LatheTestSupport

/// A `lathe serve` started by a test on a free loopback port, stopped by the test.
final class RegistryServer: @unchecked Sendable {
    let data: URL
    private(set) var process = Process()
    private(set) var port = 0
    var url: String { "http://127.0.0.1:\(port)" }

    let arguments: [String]

    init(data: URL? = nil, arguments: [String] = []) throws {
        self.data = data ?? FileManager.default.temporaryDirectory.appendingPathComponent("lathe-registry-\(UUID().uuidString)")
        self.arguments = arguments
        try start()
    }

    /// Starts the server (again, on the same data folder) and waits for its listening line.
    func start(port requested: Int = 0) throws {
        process = Process()
        process.executableURL = CLI.binary
        process.arguments = ["serve", "--data", data.path, "--host", "127.0.0.1", "--port", String(requested), "--log-level", "warning"] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(try TestDatabase.environment(forData: data.path)) { _, new in new }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("listening on"), Date() < deadline {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
              let port = Int(text[range].split(separator: ":").last ?? "") else {
            throw ServerFailure(output: text)
        }
        self.port = port
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    func kill9() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Creates a user with a token through the operator command.
    func user(_ name: String) throws -> String {
        try CLI.run(["admin", "user", "create", name, "--data", data.path])
        let token = try CLI.run(["admin", "token", "create", name, "--data", data.path])
        return token.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A plain HTTP request with curl (status, body).
    func curl(_ method: String, _ path: String, token: String? = nil, body: String? = nil, bodyFile: URL? = nil,
              headers: [String] = []) throws -> (Int, String) {
        var arguments = ["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url + path]
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", body] }
        if let bodyFile { arguments += ["--data-binary", "@" + bodyFile.path] }
        for header in headers { arguments += ["-H", header] }
        if method == "HEAD" { arguments = ["-s", "-I", "-o", "/dev/null", "-w", "\n%{http_code}", url + path] + (token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) }
        let result = try TestSupport.run("curl", arguments)
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    deinit { stop() }
}

struct ServerFailure: Error, CustomStringConvertible {
    var output: String
    var description: String { "lathe serve did not report a listening port: \(output)" }
}
