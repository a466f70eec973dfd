import ArgumentParser
import Foundation
import LatheArchive
import LatheClient
import LatheSpec

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a prediction on a registry: file inputs are uploaded, file outputs downloaded."
    )

    @Argument(help: "OWNER/NAME[:VERSION] (the latest version by default).")
    var model: String

    @Option(name: [.short, .customLong("input")], help: "An input, NAME=VALUE; NAME=@path uploads a file. Repeat for arrays.")
    var inputs: [String] = []

    @Flag(help: "Print streamed output as it is produced (models with iterator outputs).")
    var stream = false

    @Flag(inversion: .prefixedNo, help: "Wait for the outcome (the default); --no-wait prints the new prediction's id and URL and returns.")
    var wait = true

    @Option(name: .shortAndLong, help: "Folder for file outputs (default: the current folder).")
    var output: String?

    @Option(help: "Registry URL (default: LATHE_REGISTRY, else the last `lathe login`).")
    var registry: String?

    @Flag(help: "Print the final prediction as JSON.")
    var json = false

    func run() async throws {
        try await guarded {
            let parts = model.split(separator: ":", maxSplits: 1).map(String.init)
            let name = parts[0]
            guard name.split(separator: "/").count == 2 else { throw ValidationError("\"\(model)\" is not OWNER/NAME[:VERSION]") }
            let (url, token) = try Credentials.resolve(registry: registry, home: LocalStore.home)
            try await withRegistryClient(base: url, token: token) { client in
                let version = parts.count > 1 ? try await client.getJSON("/v1/models/\(name)/versions/\(parts[1])")
                    : try await client.getJSON("/v1/models/\(name)")["latest_version"] ?? .null
                guard let schema = version["openapi_schema"], let versionID = version["id"]?.stringValue else {
                    throw ValidationError("\(name) has no versions yet; push one with `lathe push`")
                }
                let spec = Self.spec(from: schema)
                var values: [String: JSONValue] = [:]
                try InputArguments(spec: spec).parse(inputs, into: &values)
                // Local files go up through /v1/files; URLs and data URIs pass as they are.
                for input in spec.inputs where input.type == .file {
                    if let path = values[input.name]?.stringValue, FileManager.default.fileExists(atPath: path) {
                        values[input.name] = .string(try await client.uploadFile(URL(fileURLWithPath: path)))
                    }
                }
                var prediction = try await client.createPrediction(model: name, version: versionID, input: values, wait: wait && !stream)
                if !wait {
                    if json { try printJSON(prediction) } else {
                        print("\(prediction["id"]?.stringValue ?? "?") \(prediction["status"]?.stringValue ?? "") \(prediction["urls"]?["get"]?.stringValue ?? "")")
                    }
                    return
                }
                if stream, let streamURL = prediction["urls"]?["stream"]?.stringValue {
                    try await client.stream(streamURL) { event, data in
                        if event == "output" && !json { print(data, terminator: spec.output.concatenate == true ? "" : "\n"); fflush(nil) }
                        if event == "logs" && !json { printError(data, terminator: "") }
                    }
                    if !json { print("") }
                }
                while let status = prediction["status"]?.stringValue.flatMap(PredictionStatus.init(rawValue:)), !status.isTerminal,
                      let get = prediction["urls"]?["get"]?.stringValue {
                    try await Task.sleep(nanoseconds: 200_000_000)
                    prediction = try await client.getJSON(get)
                }
                let saved = try await Self.saveFiles(prediction["output"] ?? .null, client: client, folder: URL(fileURLWithPath: output ?? "."), base: url)
                if json {
                    guard case .object(var object) = prediction else { return }
                    object["output"] = saved
                    try printJSON(JSONValue.object(object))
                } else if prediction["status"]?.stringValue == PredictionStatus.succeeded.rawValue {
                    if !stream {
                        if case .string(let text) = saved { print(text) } else { try printJSON(saved) }
                    }
                } else {
                    if let logs = prediction["logs"]?.stringValue, !logs.isEmpty { printError(logs, terminator: "") }
                    throw Diagnostic(nil, "prediction \(prediction["status"]?.stringValue ?? "?"): \(prediction["error"]?.stringValue ?? "no error given")")
                }
            }
        }
    }

    /// Downloads file outputs (this registry's /files/ URLs and data URIs) and puts their paths in the output.
    static func saveFiles(_ value: JSONValue, client: RegistryClient, folder: URL, base: String) async throws -> JSONValue {
        switch value {
        case .string(let text) where text.hasPrefix("data:") || text.hasPrefix(base + "/files/"):
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let type = String(text.dropFirst(5).prefix { $0 != ";" })
            let name = text.hasPrefix("data:") ? "output" + MediaTypes.fileExtension(for: type) : (URL(string: text)?.lastPathComponent ?? "output")
            let target = folder.appendingPathComponent(name)
            try await client.download(text, to: target)
            return .string(target.path)
        case .array(let items):
            var saved: [JSONValue] = []
            for item in items { saved.append(try await saveFiles(item, client: client, folder: folder, base: base)) }
            return .array(saved)
        default:
            return value
        }
    }

    /// Enough of a spec, from a version's OpenAPI Input, to type `-i` values.
    static func spec(from schema: JSONValue) -> ModelSpec {
        let components = schema["components"]?["schemas"]
        var spec = ModelSpec(predict: EntryPoint(file: "remote.py", symbol: "Model"))
        let properties = components?["Input"]?["properties"]?.objectValue ?? [:]
        let ordered = properties.sorted { ($0.value["x-order"]?.doubleValue ?? 0) < ($1.value["x-order"]?.doubleValue ?? 0) }
        for (name, property) in ordered {
            var resolved = property
            if let reference = property["allOf"]?.arrayValue?.first?["$ref"]?.stringValue,
               let target = components?[String(reference.split(separator: "/").last ?? "")] {
                resolved = target
            }
            let type: ValueType
            switch (resolved["type"]?.stringValue, resolved["format"]?.stringValue) {
            case ("string", "uri"): type = .file
            case ("string", "password"): type = .secret
            case ("integer", _): type = .integer
            case ("number", _): type = .number
            case ("boolean", _): type = .boolean
            case ("array", _): type = .array
            case ("object", _): type = .object
            default: type = .string
            }
            var input = InputSpec(name: name, type: type)
            if type == .array { input.items = resolved["items"]?["type"]?.stringValue.flatMap(ValueType.init(rawValue:)) ?? .string }
            spec.inputs.append(input)
        }
        if components?["Output"]?["x-cog-array-display"]?.stringValue == "concatenate" {
            spec.output = OutputSpec(type: .iterator)
            spec.output.concatenate = true
        }
        return spec
    }
}
