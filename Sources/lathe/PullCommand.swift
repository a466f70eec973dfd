import ArgumentParser
import Foundation
import LatheArchive
import LatheClient

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Fetch a version from a registry into the local store, verifying every digest."
    )

    @Argument(help: "OWNER/NAME[:TAG|:VERSION] (a 64-hex version id or a tag; default latest).")
    var reference: String

    @Option(help: "Registry URL (default: LATHE_REGISTRY, else the last `lathe login`).")
    var registry: String?

    func run() async throws {
        try await guarded {
            var repository = reference
            var tag = ImageReference.defaultTag
            if let colon = reference.lastIndex(of: ":") {
                repository = String(reference[..<colon])
                tag = String(reference[reference.index(after: colon)...])
            }
            guard ImageReference.isValidName(repository), repository.split(separator: "/").count == 2 else {
                throw ValidationError("\"\(reference)\" is not OWNER/NAME[:TAG]")
            }
            let (url, token) = try Credentials.resolve(registry: registry, home: LocalStore.home)
            try await withRegistryClient(base: url, token: token) { client in
            let localTag = tag.count == 64 ? ImageReference.defaultTag : tag
            let image = try await client.pull(repository: repository, reference: tag, into: try LocalStore(), tag: localTag)
            printError("pulled \(repository):\(localTag)")
            print(image.version.hex)
            }
        }
    }
}
