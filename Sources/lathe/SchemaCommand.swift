import ArgumentParser
import Foundation
import LatheSpec

struct SchemaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Print the Cog-compatible OpenAPI document of a project."
    )

    @Argument(help: "The project folder.")
    var directory: String = "."

    func run() async throws {
        try await guarded {
            let spec = try SpecParser.load(project: projectURL(directory))
            try printJSON(OpenAPISchema.document(for: spec))
        }
    }
}
