import ArgumentParser
import Foundation
import LatheArchive

struct RmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove versions from the local store (blobs no other version uses are deleted)."
    )

    @Argument(help: "NAME[:TAG] (removes that tag) or a version id (removes every tag of it).")
    var references: [String]

    func run() async throws {
        try await guarded {
            let store = try LocalStore()
            for reference in references {
                for removed in try store.remove(reference) { print("removed \(removed)") }
            }
        }
    }
}
