import ArgumentParser
import Foundation
import LatheArchive
import LatheRunner
import LatheSpec

/// What `lathe predict` and `lathe train` share: the model, its inputs, where files go and how
/// the result is reported. Both run one entry point once through the registry's runner and sandbox.
struct LocalRun: ParsableArguments {
    @Argument(help: "A project folder, or a stored version (NAME[:TAG] or version id).")
    var target: String = "."

    @Option(name: [.short, .customLong("input")], help: "An input, NAME=VALUE; NAME=@path for a file. Repeat for arrays.")
    var inputs: [String] = []

    @Option(name: .customLong("json-input"), help: "A JSON file holding an object of inputs.")
    var jsonInput: String?

    @Option(name: .shortAndLong, help: "Where to write file outputs (a file, or a folder for several; `lathe train`: ./weights).")
    var output: String?

    @Option(help: "Seconds before the run is stopped (default: timeout: in lathe.yaml).")
    var timeout: Int?

    @Option(help: "GPUs the model gets: all, a number, or none (default: all when this machine has any, as `cog predict` does).")
    var gpus: GPUChoice = .all

    @Flag(help: "Print one JSON object with status, output, error, logs and metrics.")
    var json = false

    /// `--gpus all|N|none`.
    enum GPUChoice: ExpressibleByArgument, Equatable {
        case all, none, count(Int)

        init?(argument: String) {
            switch argument.lowercased() {
            case "all": self = .all
            case "none", "0": self = .none
            default:
                guard let count = Int(argument), count > 0, count <= 1024 else { return nil }
                self = .count(count)
            }
        }

        static var allValueStrings: [String] { ["all", "none", "N"] }

        /// The GPUs given, from the machine's; throws when it has fewer than asked for.
        func choose(from available: [GPU]) throws -> [GPU] {
            switch self {
            case .all: return available
            case .none: return []
            case .count(let count):
                guard count <= available.count else {
                    throw Diagnostic(nil, "--gpus \(count) asks for more GPUs than this machine has (\(available.count))",
                                     fix: available.isEmpty ? "run without --gpus (nvidia-smi finds no GPU here)" : "ask for at most \(available.count), or --gpus all")
                }
                return Array(available.sorted { $0.index < $1.index }.prefix(count))
            }
        }
    }

    struct Report: Encodable {
        var status: String
        var output: JSONValue?
        var error: String?
        var logs: String
        var metrics: [String: Double]
        var version: String?
        /// The version `lathe train -t` made.
        var trainedVersion: String?

        enum CodingKeys: String, CodingKey {
            case status, output, error, logs, metrics, version
            case trainedVersion = "trained_version"
        }
    }

    /// Runs `role`'s entry point once and reports as `lathe predict` and `lathe train` do; a
    /// training given `tag` also makes a new version of the model with the weights it returned.
    func run(_ role: EntryRole, tag: String? = nil) async throws {
        try await guarded {
            let home = LocalStore.home
            let (model, image) = try resolveModel(home: home)
            let version = image?.version.hex
            let what = role == .train ? "training" : "prediction"
            var prepared = model
            if role == .train {
                guard let training = model.training() else {
                    throw Diagnostic(nil, "\(version.map { "version \($0.prefix(12))" } ?? "this model") declares no train: entry point",
                                     fix: "add to lathe.yaml for example `train: {entry: train.py:train, inputs: {steps: {type: integer, default: 100}}}`")
                }
                prepared = training
            }
            // The version a training with -t starts from (the project built, when it is one).
            let trainedName = try tag.map { try BuildCommand.refName(tag: $0, spec: model.spec, project: projectURL(target)) }
            let base = try trainedName.map { _ in try image ?? buildProject(model) }
            let spec = prepared.spec
            let destination = output ?? (role == .train ? "weights" : nil)

            var values: [String: JSONValue] = [:]
            if let jsonInput {
                guard let data = FileManager.default.contents(atPath: jsonInput),
                      let object = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
                    throw Diagnostic(nil, "\(jsonInput) is not a JSON object of inputs", fix: "write for example {\"text\": \"hi\"}")
                }
                values = object
            }
            try InputArguments(spec: spec).parse(inputs, into: &values)
            let validated = try InputValidator.validate(values, spec: spec)

            let work = home.appendingPathComponent("work/\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: work) }
            let localized = try await InputFiles.localize(validated, spec: spec, directory: work.appendingPathComponent("inputs"),
                                                          outbound: OutboundHTTP(policy: .unrestricted), timeout: 600) { reference, field in
                // Anything that is not a URL is a local path (`-i image=@photo.png`).
                guard !reference.hasPrefix("http://"), !reference.hasPrefix("https://") else { return nil }
                let source = URL(fileURLWithPath: reference)
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: source.path),
                      attributes[.type] as? FileAttributeType == .typeRegular else {
                    throw FieldError(field: field, message: "file \"\(reference)\" does not exist")
                }
                guard (attributes[.size] as? Int ?? 0) <= InputFiles.maxBytes else {
                    throw FieldError(field: field, message: "file \"\(reference)\" is larger than \(InputFiles.maxBytes >> 20) MB")
                }
                return (source, source.lastPathComponent)
            }

            let sandbox = try Sandbox.detect(network: spec.network)
            let build = EnvironmentBuild.authorsOwn(sandbox: sandbox)
            let silent = json
            var configuration = try prepared.configuration(home: home, workDirectory: work, sandbox: sandbox, build: build) { text in
                if !silent { printError(text, terminator: "") }
            }
            // The machine's GPUs, bound into the sandbox as the registry's workers bind them.
            let given = try gpus.choose(from: gpus == .none ? [] : HardwareInventory.detect(labels: []).gpus)
            configuration.gpus = GPUAccess.forInstance(given)
            let process = ModelProcess(configuration)
            defer { process.terminate() }
            let started = Date()
            switch try await process.start() {
            case .failed(let error, let logs):
                if !logs.isEmpty { printError(logs, terminator: "") }
                let missingModule = error.hasPrefix("ModuleNotFoundError") || error.hasPrefix("ImportError")
                throw Diagnostic(nil, "the model's setup failed: \(error)",
                                 fix: missingModule ? "list the package in python_packages in lathe.yaml (`lathe validate --import` checks imports)"
                                                    : "fix setup() in \(spec.predict.file) (logs above)")
            case .ready(_, let logs):
                // What setup() printed is shown before the prediction's own logs.
                if !logs.isEmpty { printError(logs, terminator: logs.hasSuffix("\n") ? "" : "\n") }
            }
            let setupTime = Date().timeIntervalSince(started)

            let id = UUID().uuidString.lowercased()
            let interrupts = InterruptHandler { count in
                if count == 1 {
                    printError("\ncanceling… (press Ctrl-C again to stop the model at once)")
                    process.cancel(id: id)
                } else {
                    process.terminate()
                }
            }
            defer { interrupts.stop() }
            let concatenate = spec.output.concatenate == true
            let quiet = json
            let outputs = work.appendingPathComponent("outputs")
            let outcome = await process.predict(id: id, input: localized, outputDirectory: outputs,
                                                timeout: TimeInterval(timeout ?? spec.timeout)) { event in
                guard !quiet else { return }
                switch event {
                case .log(let text):
                    printError(text, terminator: "")
                case .output(_, let value):
                    if case .string(let text) = value {
                        print(text, terminator: concatenate ? "" : "\n")
                    } else if let data = try? JSON.canonical(value) {
                        print(String(decoding: data, as: UTF8.self))
                    }
                    fflush(nil)
                }
            }
            if concatenate && !json { print("") }
            let (result, files) = try OutputFiles.place(outcome.output, from: outputs, destination: destination)
            var trained: ModelBuilder.Result?
            if outcome.status == .succeeded, let base, let trainedName {
                trained = try ModelBuilder(store: LocalStore(), cache: nil).trained(from: base, files: files, refName: trainedName)
                printError("built \(trainedName) (version \(trained!.version.prefix(12))): \(version.map { "version \($0.prefix(12))" } ?? "the project") with the trained weights")
            }
            let streamed = spec.output.type == .iterator
            if json {
                var metrics = ["setup_time": setupTime]
                if let predictTime = outcome.predictTime { metrics["predict_time"] = predictTime }
                try printJSON(Report(status: outcome.status.rawValue, output: result, error: outcome.error, logs: outcome.logs,
                                     metrics: metrics, version: version, trainedVersion: trained?.version))
            } else if outcome.status == .succeeded, let result, !streamed || OutputFiles.containsFiles(outcome.output) {
                if case .string(let text) = result { print(text) } else { try printJSON(result) }
            }
            switch outcome.status {
            case .succeeded: return
            case .canceled:
                if !json { printError("\(what) canceled") }
                throw ExitCode(130)
            case .failed:
                if !json { printError("error: \(what) failed: \(outcome.error ?? "unknown error")") }
                throw ExitCode.failure
            }
        }
    }

    /// The project built (untagged) into the local store, for a training with -t to start from:
    /// a failed training leaves every tag as it was.
    private func buildProject(_ model: PreparedModel) throws -> LocalStore.Image {
        let store = try LocalStore()
        let built = try ModelBuilder(store: store, cache: BuildCommand.statCache())
            .build(project: projectURL(target), spec: model.spec, refName: nil)
        let manifest = try store.readBlob(built.manifest)
        return try store.image(Descriptor(mediaType: MediaType.imageManifest, digest: built.manifest, size: Int64(manifest.count)))
    }

    /// A folder with lathe.yaml runs in place; anything else is looked up in the local store
    /// (and its image returned too).
    private func resolveModel(home: URL) throws -> (PreparedModel, LocalStore.Image?) {
        let project = projectURL(target)
        if FileManager.default.fileExists(atPath: project.appendingPathComponent("lathe.yaml").path) {
            let spec = try loadCheckedSpec(project)
            return (try PreparedModel.project(project, spec: spec), nil)
        }
        if target == "." {
            throw Diagnostic(nil, "no lathe.yaml in \(project.path)", fix: "cd into a model project, or name a project folder or a stored version")
        }
        let store = try LocalStore()
        let image = try store.resolve(target)
        return (try PreparedModel.image(image, store: store, home: home), image)
    }
}

/// Counts Ctrl-C presses instead of dying on the first, so a prediction can be canceled cleanly.
final class InterruptHandler: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private var count = 0

    init(_ handler: @escaping @Sendable (Int) -> Void) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            count += 1
            handler(count)
        }
        source.resume()
    }

    func stop() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
