import ArgumentParser
import Foundation
import LatheArchive

struct ImagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List model versions in the local store.")

    @Flag(help: "Print a JSON array.")
    var json = false

    struct Row: Encodable {
        var reference: String
        var version: String
        var manifest: String
        var size: Int64
        var created: String?
    }

    func run() async throws {
        try await guarded {
            let store = try LocalStore()
            let rows = try store.images().map { image in
                Row(reference: image.refName ?? "<none>", version: image.version.hex, manifest: image.manifestDescriptor.digest.description,
                    size: image.manifest.layers.reduce(image.manifest.config.size) { $0 + $1.size },
                    created: image.manifestDescriptor.annotations?[Annotation.created])
            }.sorted { $0.reference < $1.reference }
            if json { return try printJSON(rows) }
            let width = max(10, rows.map(\.reference.count).max() ?? 0)
            print("REFERENCE".padding(toLength: width + 2, withPad: " ", startingAt: 0) + "VERSION       SIZE        CREATED")
            for row in rows {
                print(row.reference.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                      + String(row.version.prefix(12)) + "  "
                      + formatBytes(row.size).padding(toLength: 10, withPad: " ", startingAt: 0) + "  " + (row.created ?? ""))
            }
        }
    }
}
