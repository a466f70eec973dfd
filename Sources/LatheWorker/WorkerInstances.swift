import Foundation
import LatheArchive
import LatheClient
import LatheRunner
import LatheSpec
import NIOCore
import NIOFoundationCompat

/// The instances one worker runs, and what it does with each command (DESIGN §6: workers run,
/// the server decides). Everything it learns goes back through `client` as worker-protocol
/// reports; nothing here reaches the server's database or disk.
actor WorkerInstances {
    struct Settings: Sendable {
        var sandbox: Sandbox?
        var build: EnvironmentBuild
        /// Logs of one prediction are batched this long before they are sent.
        var batchInterval: TimeInterval = 0.05
    }

    private final class Instance: @unchecked Sendable {
        let id: String
        let version: WorkerVersion
        let work: URL
        var process: ModelProcess?
        var gpus: [GPU] = []
        /// Predictions running here, by assignment.
        var assignments: [String: String] = [:]
        var reportedStop = false
        init(id: String, version: WorkerVersion, work: URL) {
            self.id = id
            self.version = version
            self.work = work
        }
    }

    private let client: RegistryClient
    private let cache: VersionCache
    private let settings: Settings
    private let folder: URL
    private var workerID = ""
    private var instances: [String: Instance] = [:]
    private var freeGPUs: [GPU]
    private let log: @Sendable (String) -> Void

    init(client: RegistryClient, cache: VersionCache, folder: URL, gpus: [GPU], settings: Settings, log: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.log = log
        self.cache = cache
        self.folder = folder
        self.freeGPUs = gpus
        self.settings = settings
    }

    /// A new registration: what ran for the old one is stopped (the server forgot it).
    func registered(as id: String) {
        for instance in instances.values { stop(instance) }
        instances.removeAll()
        workerID = id
    }

    var instanceIDs: [String] { Array(instances.keys) }

    private var base: String { WorkerProtocol.root + "/" + workerID }

    func handle(_ command: WorkerCommand) {
        switch command.kind {
        case .boot:
            guard let id = command.instance, let version = command.version, instances[id] == nil else { return }
            let instance = Instance(id: id, version: version, work: folder.appendingPathComponent("work/\(id)"))
            instances[id] = instance
            Task { await boot(instance, gpus: max(0, command.gpus ?? 0)) }
        case .stop:
            guard let id = command.instance, let instance = instances.removeValue(forKey: id) else { return }
            stop(instance)
        case .predict:
            guard let id = command.instance, let assignment = command.assignment, let prediction = command.prediction else { return }
            guard let instance = instances[id], let process = instance.process else {
                let path = "\(base)/instances/\(id)/assignments/\(assignment)/complete"
                Task { [client] in
                    try? await Self.post(client, path, WorkerCompletion(outcome: PredictionOutcome(status: .failed, error: "the instance is not running on this worker")))
                }
                return
            }
            instance.assignments[assignment] = prediction
            Task { await predict(command, assignment: assignment, prediction: prediction, on: instance, process: process) }
        case .cancel:
            guard let id = command.instance, let assignment = command.assignment,
                  let instance = instances[id], let prediction = instance.assignments[assignment] else { return }
            instance.process?.cancel(id: prediction)
        }
    }

    /// Instances whose model process ended on its own are reported stopped (once) and dropped.
    func reapCrashed() async {
        for instance in instances.values where instance.process != nil && instance.process?.isRunning == false && !instance.reportedStop {
            instance.reportedStop = true
            instances.removeValue(forKey: instance.id)
            stop(instance)
            try? await Self.post(client, "\(base)/instances/\(instance.id)", InstanceReport(state: .stopped, error: "the model process exited"))
        }
    }

    private func stop(_ instance: Instance) {
        instance.process?.terminate()
        freeGPUs += instance.gpus
        instance.gpus = []
        let (cache, version, work) = (cache, instance.version, instance.work)
        Task {
            await cache.release(version)
            try? FileManager.default.removeItem(at: work)
        }
    }

    private func boot(_ instance: Instance, gpus: Int) async {
        let path = "\(base)/instances/\(instance.id)"
        let log = BuildLog()
        let reporter = Task { [client] in
            // The boot's output reaches the server (and the waiting predictions) once a second.
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                if let text = log.takeIfChanged() { try? await Self.post(client, path, InstanceReport(state: .booting, logs: text)) }
            }
        }
        defer { reporter.cancel() }
        do {
            guard gpus <= freeGPUs.count else {
                throw Diagnostic(nil, "the instance asks for \(gpus) GPU(s) and this worker has \(freeGPUs.count) free")
            }
            let given = Array(freeGPUs.prefix(gpus))
            freeGPUs.removeFirst(gpus)
            instance.gpus = given
            let started = Date()
            let (prepared, cached) = try await cache.acquire(instance.version, client: client)
            let line = cached ? "version \(instance.version.id.prefix(12)) was in this worker's cache"
                              : "pulled version \(instance.version.id.prefix(12)) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
            log.append(line.prefix(1).uppercased() + line.dropFirst() + ".\n")
            self.log("instance \(instance.id): \(line)")
            let home = cache.home, sandbox = settings.sandbox, build = settings.build, work = instance.work
            var configuration = try await onOwnThread {
                var environmentBuild = build
                environmentBuild.sandbox = sandbox
                return try prepared.configuration(home: home, workDirectory: work, sandbox: sandbox, build: environmentBuild) { log.append($0) }
            }
            configuration.gpus = GPUAccess.forInstance(given)
            let process = ModelProcess(configuration)
            switch try await process.start() {
            case .ready(_, let logs):
                guard instances[instance.id] === instance else {
                    // Stopped while it booted.
                    process.terminate()
                    return
                }
                instance.process = process
                try await Self.post(client, path, InstanceReport(state: .ready, logs: log.text + logs))
            case .failed(let error, let logs):
                process.terminate()
                instances.removeValue(forKey: instance.id)
                stop(instance)
                try? await Self.post(client, path, InstanceReport(state: .failed, error: error, logs: log.text + logs))
            }
        } catch {
            instances.removeValue(forKey: instance.id)
            stop(instance)
            try? await Self.post(client, path, InstanceReport(state: .failed, error: "\(error)", logs: log.text))
        }
    }

    private func predict(_ command: WorkerCommand, assignment: String, prediction: String, on instance: Instance, process: ModelProcess) async {
        let path = "\(base)/instances/\(instance.id)/assignments/\(assignment)"
        let inputs = instance.work.appendingPathComponent("inputs/\(prediction)")
        let outputs = instance.work.appendingPathComponent("outputs/\(prediction)")
        defer {
            instance.assignments.removeValue(forKey: assignment)
            try? FileManager.default.removeItem(at: inputs)
            try? FileManager.default.removeItem(at: outputs)
        }
        let deadline = Date().addingTimeInterval(command.timeout ?? 1800)
        var outcome: PredictionOutcome
        do {
            // File inputs come from the server (it fetched or holds them); their values become
            // this worker's paths.
            var local: [String: String] = [:]
            for relative in command.inputFiles ?? [] {
                let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
                    throw Diagnostic(nil, "the server named an input file \"\(relative.prefix(80))\" that is not FOLDER/NAME")
                }
                let target = inputs.appendingPathComponent(relative)
                try await Self.resending { try await client.download("\(path)/inputs/\(relative)", to: target, limit: Int64(InputFiles.maxBytes) + 1) }
                local[relative] = target.path
            }
            let input = (command.input ?? [:]).mapValues { Self.localize($0, local) }
            let batcher = EventBatcher(client: client, path: "\(path)/events", interval: settings.batchInterval)
            outcome = await process.predict(id: prediction, input: input, context: command.context ?? [:], outputDirectory: outputs,
                                            timeout: max(0.001, deadline.timeIntervalSinceNow), checkSafety: command.checkSafety ?? false) { event in
                batcher.add(event)
            }
            await batcher.finish()
            for name in Self.files(in: outcome.output) {
                let file = outputs.appendingPathComponent(name)
                guard !name.contains("/"), FileManager.default.fileExists(atPath: file.path) else { continue }
                // The server writes the whole file again on a second PUT.
                try await Self.resending {
                    try await client.upload(.PUT, "\(path)/files/\(name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name)",
                                            file: file, expect: [201])
                }
            }
        } catch {
            outcome = PredictionOutcome(status: .failed, error: "\(error)")
        }
        do {
            try await Self.post(client, "\(path)/complete", WorkerCompletion(outcome: outcome))
        } catch {
            // Refused when the server counted this worker lost and ran the prediction elsewhere.
            log("the server did not take the result of prediction \(prediction): \(error)")
        }
    }

    /// Input values naming a fetched file become its local path (only exact matches).
    static func localize(_ value: JSONValue, _ local: [String: String]) -> JSONValue {
        switch value {
        case .string(let text): return local[text].map { .string($0) } ?? value
        case .array(let items): return .array(items.map { localize($0, local) })
        default: return value
        }
    }

    /// Names of the output's `{"$file": NAME}` files.
    static func files(in output: JSONValue?) -> [String] {
        guard let output else { return [] }
        switch output {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue { return [name] }
            return object.values.flatMap { files(in: $0) }
        case .array(let items): return items.flatMap { files(in: $0) }
        default: return []
        }
    }

    /// Sends a report. One that did not arrive is sent again (``resending(_:)``).
    static func post(_ client: RegistryClient, _ path: String, _ body: some Encodable) async throws {
        let data = try JSONEncoder().encode(body)
        try await resending {
            try await client.send(.POST, path, headers: [("Content-Type", "application/json")], body: .bytes(ByteBuffer(data: data)),
                                  expect: [200, 201, 204])
        }
    }

    /// Runs `request` again when it did not arrive (the connection failed, or a balancer
    /// answered 5xx because the replica behind it died), up to 6 times over about 6 s: any
    /// replica takes it. The server's own refusals (409, 400, 404) are final.
    @discardableResult
    static func resending<T: Sendable>(_ request: @Sendable () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await request()
            } catch let failure as RegistryClient.Failure where failure.status < 500 {
                throw failure
            } catch {
                attempt += 1
                guard attempt < 6, !Task.isCancelled else { throw error }
                try await Task.sleep(nanoseconds: UInt64(100_000_000 << attempt))
            }
        }
    }
}
