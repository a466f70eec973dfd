import ArgumentParser
import Foundation
import LatheArchive
import LatheSpec

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a stored version's manifest, config and schema as JSON."
    )

    @Argument(help: "NAME[:TAG], NAME@sha256:…, or a version id (prefix).")
    var reference: String

    struct Inspection: Encodable {
        var reference: String?
        var version: String
        var manifestDigest: Digest
        var manifest: Manifest
        var config: ModelConfig

        enum CodingKeys: String, CodingKey {
            case reference, version, manifest, config
            case manifestDigest = "manifest_digest"
        }
    }

    func run() async throws {
        try await guarded {
            let image = try LocalStore().resolve(reference)
            try printJSON(Inspection(reference: image.refName, version: image.version.hex, manifestDigest: image.manifestDescriptor.digest,
                                     manifest: image.manifest, config: image.config))
        }
    }
}
