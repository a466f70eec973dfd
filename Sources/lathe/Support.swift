import ArgumentParser
import Foundation
import LatheArchive
import LatheClient
import LatheRunner
import LatheSpec

/// Writes to standard error (progress, logs and problems never mix with results on stdout).
func printError(_ text: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((text + terminator).utf8))
}

/// Prints a failure the way users read it (one `file:line:column: …` per line) and exits 1.
func fail(_ error: any Error) -> ExitCode {
    switch error {
    case let error as ExitCode:
        return error
    case let error as CleanExit:
        printError("\(error)")
        return .success
    case let error as CocoaError where error.filePath != nil:
        // Foundation's own text ("You don't have permission.") names neither the file nor a way out.
        let path = error.filePath ?? ""
        let reason = switch error.code {
        case .fileWriteNoPermission, .fileReadNoPermission: "permission denied"
        case .fileNoSuchFile, .fileReadNoSuchFile: "no such file or folder"
        case .fileWriteOutOfSpace: "the disk is full"
        case .fileWriteVolumeReadOnly: "the file system is read-only"
        default: "\(error.code)"
        }
        let home = LocalStore.home.path
        let fix = path.hasPrefix(home) || home.hasPrefix(path)
            ? "Lathe keeps its store and environments in \(home): set LATHE_HOME (or HOME) to a folder you can write"
            : "check that the path exists and that this user may write it"
        printError("error: \(Diagnostic(nil, "cannot use \(path): \(reason)", fix: fix))")
        return .failure
    case let error as EnvironmentBuildFailure:
        // The installer's output streamed to this terminal as it ran.
        printError("error: \(error.shownAbove)")
        return .failure
    default:
        for line in String(describing: error).split(separator: "\n", omittingEmptySubsequences: false) {
            printError("error: \(line)")
        }
        return .failure
    }
}

/// Runs a command body, turning any error into a clean message and exit status.
func guarded(_ body: () async throws -> Void) async throws {
    do { try await body() } catch { throw fail(error) }
}

/// Whether standard error is a terminal (progress bars only there).
var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

/// A project folder argument resolved to an absolute URL.
func projectURL(_ path: String) -> URL {
    URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL
}

/// Loads `lathe.yaml` and checks the predictor against it (DESIGN §3).
func loadCheckedSpec(_ project: URL) throws -> ModelSpec {
    let spec = try SpecParser.load(project: project)
    try PredictorCheck.check(spec, project: project)
    return spec
}

/// Prints an Encodable as pretty JSON on stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    print(String(decoding: try JSON.pretty(value), as: UTF8.self))
}

/// A one-line progress bar on standard error, redrawn at most ten times a second.
final class ProgressBar: @unchecked Sendable {
    private var last = Date.distantPast
    private let started = Date()
    private let lock = NSLock()

    func update(_ label: String, done: Int64, total: Int64) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(last) > 0.1 || done == total else { return }
        last = now
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let speed = Double(done) / max(now.timeIntervalSince(started), 0.001) / 1e6
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        printError(String(format: "\r\u{1B}[K%@ %@ %3.0f%% %.0f MB/s", label, bar, fraction * 100, speed), terminator: "")
        if done == total { printError("") }
    }
}

/// Human-readable byte counts.
func formatBytes(_ bytes: Int64) -> String {
    ByteCountFormatter.string(fromByteCount: bytes, countStyle: .file)
}

/// Runs `body` with a registry client that is shut down afterwards, whatever happens.
func withRegistryClient<T>(base: String, token: String?, _ body: (RegistryClient) async throws -> T) async throws -> T {
    let client = RegistryClient(base: base, token: token)
    do {
        let result = try await body(client)
        await client.shutdown()
        return result
    } catch {
        await client.shutdown()
        throw error
    }
}
