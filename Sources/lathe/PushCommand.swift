import ArgumentParser
import Foundation
import LatheArchive
import LatheClient
import LatheSpec

struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Publish a version to a registry (building it first when given a project folder)."
    )

    @Argument(help: "A project folder (built first) or a stored version (NAME[:TAG] or version id).")
    var source: String = "."

    @Argument(help: "Where to push: OWNER/NAME[:TAG] (default: the version's own name).")
    var destination: String?

    @Option(help: "Registry URL (default: LATHE_REGISTRY, else the last `lathe login`).")
    var registry: String?

    @Flag(help: "Create the model as public if it does not exist yet (default: private).")
    var `public` = false

    @Flag(help: "Print one JSON object with version, bytes_uploaded and blobs_skipped.")
    var json = false

    func run() async throws {
        try await guarded {
            let project = projectURL(source)
            let store: LocalStore
            let image: LocalStore.Image
            let fromProject = FileManager.default.fileExists(atPath: project.appendingPathComponent("lathe.yaml").path)
            if fromProject {
                let built = try BuildCommand.build(project: project, tag: nil, showProgress: !json)
                store = built.0
                image = try store.resolve(built.1)
            } else {
                store = try LocalStore()
                image = try store.resolve(source)
            }
            let target = destination ?? image.refName ?? image.config.spec.name ?? ""
            guard let reference = ImageReference(parsing: target), let name = reference.name, name.split(separator: "/").count == 2 else {
                throw ValidationError("push needs a destination OWNER/NAME[:TAG] (got \"\(target)\")")
            }
            let tag = reference.tag ?? ImageReference.defaultTag
            let (url, token) = try Credentials.resolve(registry: registry, home: LocalStore.home)
            try await withRegistryClient(base: url, token: token) { client in
            let parts = name.split(separator: "/").map(String.init)
            if `public` { _ = try await client.createModel(owner: parts[0], name: parts[1], visibility: "public") }
            let chunk = ProcessInfo.processInfo.environment["LATHE_CHUNK_SIZE"].flatMap(Int64.init) ?? 64 << 20
            let bar = stderrIsTerminal && !json ? ProgressBar() : nil
            let result = try await client.push(image, store: store, repository: name, tag: tag, journal: UploadJournal(home: LocalStore.home),
                                               history: PushHistory(home: LocalStore.home), chunkSize: chunk) { digest, done, total in
                bar?.update("uploading \(digest.hex.prefix(12))", done: done, total: total)
            }
            // The project's README.md is the model page's readme until someone edits the readme
            // there (best effort: a plain OCI registry has no readme to set).
            let readme = project.appendingPathComponent("README.md")
            if fromProject, let text = try? String(contentsOf: readme, encoding: .utf8), !text.isEmpty,
               let outcome = try? await client.pushReadme(text, model: name), !json {
                switch outcome {
                case "adopted": printError("README.md is now the readme of \(name); later pushes update it until it is edited on the model's settings page")
                case "updated": printError("README.md updated the readme of \(name)")
                case "kept": printError("the readme of \(name) was edited on its settings page and is kept; README.md's changes were not applied (paste them there, or clear the readme there to let pushes set it again)")
                default: break
                }
            }
            if json {
                try printJSON(result)
            } else {
                printError("pushed \(name):\(tag): \(formatBytes(result.bytesUploaded)) uploaded, \(result.blobsSkipped) blob(s) already there")
                print(result.version)
                print(result.url)
            }
            }
        }
    }
}
