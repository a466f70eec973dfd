import ArgumentParser
import Foundation
import LatheSpec
import LatheTemplates

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a working model project (lathe.yaml, predict.py, a CI publish pipeline), or convert a Cog project."
    )

    @Argument(help: "The project folder (created if missing).")
    var directory: String = "."

    @Option(help: "Template to start from: \(Templates.names.joined(separator: ", ")).")
    var template: String = "python"

    @Option(help: "The publish pipeline to write: github (.github/workflows/lathe.yml), gitlab (.gitlab-ci.yml) or none.")
    var ci: Templates.CI = .github

    @Flag(name: .customLong("from-cog"), help: "Convert cog.yaml and its predictor in DIRECTORY into lathe.yaml.")
    var fromCog = false

    @Flag(help: "Overwrite files that already exist.")
    var force = false

    func validate() throws {
        guard fromCog || Templates.names.contains(template) else {
            throw ValidationError("unknown template \"\(template)\"; choose one of \(Templates.names.joined(separator: ", "))")
        }
    }

    func run() async throws {
        try await guarded {
            let project = projectURL(directory)
            try FileManager.default.createDirectory(at: project, withIntermediateDirectories: true)
            if fromCog {
                let target = project.appendingPathComponent("lathe.yaml")
                if FileManager.default.fileExists(atPath: target.path) && !force {
                    throw Diagnostic(nil, "\(target.path) already exists", fix: "remove it or pass --force")
                }
                let conversion = try CogImport.conversion(project: project)
                try Data(conversion.text.utf8).write(to: target)
                // The converted spec must pass the same checks as a hand-written one.
                let spec = try loadCheckedSpec(project)
                print("wrote \(target.path) with \(spec.inputs.count) inputs from cog.yaml")
                // Nothing is dropped silently: each key it could not carry, in one sentence.
                for note in conversion.notes { printError("note: " + note) }
                return
            }
            let name = project.lastPathComponent.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }
            let written = try Templates.write(template, to: project, ci: ci, replacing: ["{{name}}": String(name)], force: force)
            for (path, wasWritten) in written {
                print(wasWritten ? "wrote \(path)" : "skipped \(path) (exists; --force overwrites)")
            }
            // The example names this template's own required inputs, so it runs as printed.
            let spec = try SpecParser.load(project: project)
            print("\nNext: cd \(directory) && lathe predict" + Self.exampleInputs(spec).map { " -i \($0)" }.joined())
        }
    }
}

extension InitCommand {
    /// `name=value` for each required input of `spec`, with a value of its type.
    static func exampleInputs(_ spec: ModelSpec) -> [String] {
        spec.inputs.filter(\.isRequired).map { input in
            let value: String = switch input.type {
            case .integer: String(input.minimum.flatMap(\.exactInteger) ?? 1)
            case .number: String(input.minimum ?? 0.5)
            case .boolean: "true"
            case .file: "@example.png"
            case .object: "{}"
            case .array: "[]"
            default: input.choices?.first.flatMap(\.stringValue) ?? "hello"
            }
            return "\(input.name)=\(value.contains(" ") ? "'\(value)'" : value)"
        }
    }
}

extension Templates.CI: ExpressibleByArgument {}
