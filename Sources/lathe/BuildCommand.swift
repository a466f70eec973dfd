import ArgumentParser
import Foundation
import LatheArchive
import LatheSpec

struct BuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Validate a project and pack it into a model version in the local store."
    )

    @Argument(help: "The project folder.")
    var directory: String = "."

    @Option(name: .shortAndLong, help: "Name and tag, NAME[:TAG] (default: name: in lathe.yaml, else the folder name; tag latest).")
    var tag: String?

    @Option(name: .shortAndLong, help: "Also write the version as a self-contained OCI layout tar.")
    var output: String?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() async throws {
        try await guarded {
            let project = projectURL(directory)
            let (store, refName, result) = try Self.build(project: project, tag: tag, showProgress: !json)
            if let output {
                try store.export(try store.resolve(refName), refName: refName, to: projectURL(output))
            }
            if json {
                try printJSON(result)
            } else {
                let weights = result.layers.filter { $0.role == "weights" }
                let bytes = weights.reduce(0) { $0 + $1.size }
                let weightsText = switch weights.count {
                case 0: "no weights"
                case 1: "1 weights file of \(formatBytes(bytes))"
                default: "\(weights.count) weights files, \(formatBytes(bytes))"
                }
                printError("built \(refName): code \(formatBytes(result.layers[0].size)), \(weightsText)")
                print(result.version)
            }
        }
    }

    /// Validates and builds `project` into the local store; shared with `lathe push DIR`.
    static func build(project: URL, tag: String?, showProgress: Bool) throws -> (LocalStore, String, ModelBuilder.Result) {
        let spec = try loadCheckedSpec(project)
        let refName = try refName(tag: tag, spec: spec, project: project)
        let store = try LocalStore()
        var builder = ModelBuilder(store: store, cache: statCache())
        if stderrIsTerminal && showProgress {
            let bar = ProgressBar()
            builder.progress = { path, done, total in
                if total >= 64 << 20 { bar.update("hashing \(path)", done: done, total: total) }
            }
        }
        return (store, refName, try builder.build(project: project, spec: spec, refName: refName))
    }

    /// The stat cache builds share, so an unchanged weights file is not hashed again.
    static func statCache() -> StatCache {
        StatCache(url: LocalStore.home.appendingPathComponent("cache/stat-cache.json"))
    }

    /// `-t` if given, else lathe.yaml's `name:`, else the folder name; tag `latest` by default.
    static func refName(tag: String?, spec: ModelSpec, project: URL) throws -> String {
        let text = tag ?? spec.name ?? project.lastPathComponent.lowercased()
        guard let reference = ImageReference(parsing: text), reference.digest == nil, let refName = reference.refName else {
            throw Diagnostic(nil, "\"\(text)\" is not a valid NAME[:TAG]",
                             fix: "use lowercase letters, digits, '.', '_', '-' and '/', e.g. -t acme/sentiment:v1")
        }
        return refName
    }
}
