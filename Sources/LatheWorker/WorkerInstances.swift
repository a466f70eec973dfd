import Foundation
import LatheArchive
import LatheClient
import LatheRunner
import LatheSpec

/// The instances one worker runs, and what it does with each command (DESIGN §6: workers run,
/// the server decides). `lathe worker` and the embedded worker of `lathe serve` both run their
/// instances here; only their ``WorkSource`` differs. Everything it learns goes back through the
/// source as worker-protocol reports; nothing here reaches the server's database or disk.
package actor WorkerInstances {
    package struct Settings: Sendable {
        package var sandbox: Sandbox?
        package var build: EnvironmentBuild

        package init(sandbox: Sandbox?, build: EnvironmentBuild) {
            self.sandbox = sandbox
            self.build = build
        }
    }

    private final class Instance: @unchecked Sendable {
        let id: String
        let version: WorkerVersion
        let work: URL
        var process: ModelProcess?
        var gpus: [GPU] = []
        /// Whether its version was acquired from the source (and must be released once).
        var acquired = false
        /// Predictions running here, by assignment.
        var assignments: [String: String] = [:]
        var reportedStop = false
        init(id: String, version: WorkerVersion, work: URL) {
            self.id = id
            self.version = version
            self.work = work
        }
    }

    private let source: any WorkSource
    private let settings: Settings
    private let folder: URL
    private var instances: [String: Instance] = [:]
    private var freeGPUs: [GPU]
    private let log: @Sendable (String) -> Void

    /// Instances work in `folder/work/<instance>`; `gpus` are the machine's GPUs to give out.
    package init(source: any WorkSource, folder: URL, gpus: [GPU], settings: Settings, log: @escaping @Sendable (String) -> Void) {
        self.source = source
        self.log = log
        self.folder = folder
        self.freeGPUs = gpus
        self.settings = settings
    }

    /// A new registration: what ran for the old one is stopped (the server forgot it).
    package func registered() {
        stopAll()
    }

    package var instanceIDs: [String] { Array(instances.keys) }

    /// Stops every instance now: each model process is told to shut down (and killed when it
    /// has not after 2 s).
    package func stopAll() {
        for instance in instances.values { stop(instance) }
        instances.removeAll()
    }

    package func handle(_ command: WorkerCommand) {
        switch command.kind {
        case .boot:
            guard let id = command.instance, let version = command.version, instances[id] == nil else { return }
            let instance = Instance(id: id, version: version, work: folder.appendingPathComponent("work/\(id)"))
            instances[id] = instance
            Task { await boot(instance, gpus: max(0, command.gpus ?? 0), sku: command.sku) }
        case .stop:
            guard let id = command.instance, let instance = instances.removeValue(forKey: id) else { return }
            stop(instance)
        case .predict:
            guard let id = command.instance, let assignment = command.assignment, let prediction = command.prediction else { return }
            guard let instance = instances[id], let process = instance.process else {
                Task { [source] in
                    try? await source.complete(instance: id, assignment: assignment,
                                               WorkerCompletion(outcome: PredictionOutcome(status: .failed, error: "the instance is not running on this worker"),
                                                                instanceStopped: true))
                }
                return
            }
            instance.assignments[assignment] = prediction
            HotPath.task { await self.predict(command, assignment: assignment, prediction: prediction, on: instance, process: process) }
        case .cancel:
            guard let id = command.instance, let assignment = command.assignment,
                  let instance = instances[id], let prediction = instance.assignments[assignment] else { return }
            instance.process?.cancel(id: prediction)
        }
    }

    /// Instances whose model process ended on its own and that run no prediction are reported
    /// stopped (once) and dropped; one that was running predictions is reported with their
    /// completions (``predict(_:assignment:prediction:on:process:)``).
    package func reapCrashed() async {
        for instance in instances.values where instance.process?.isRunning == false {
            await reapIfIdle(instance)
        }
    }

    private func reapIfIdle(_ instance: Instance) async {
        guard instances[instance.id] === instance, instance.assignments.isEmpty, !instance.reportedStop else { return }
        instance.reportedStop = true
        instances.removeValue(forKey: instance.id)
        stop(instance)
        try? await source.report(instance: instance.id, InstanceReport(state: .stopped, error: "the model process exited"))
    }

    private func stop(_ instance: Instance) {
        instance.process?.terminate()
        freeGPUs += instance.gpus
        instance.gpus = []
        let (source, version, work, acquired) = (source, instance.version, instance.work, instance.acquired)
        instance.acquired = false
        Task {
            // A boot refused or failed before its version was acquired holds nothing to release
            // (releasing it anyway would count another instance's copy unused).
            if acquired { await source.release(version) }
            try? FileManager.default.removeItem(at: work)
        }
    }

    /// GPUs for an instance that asks for `count` of model `sku` (any model when it names none).
    private func takeGPUs(_ count: Int, sku: String?) throws -> [GPU] {
        guard count > 0 else { return [] }
        let matching = freeGPUs.filter { sku?.hasPrefix("gpu-") != true || $0.sku == sku }
        guard count <= matching.count else {
            throw NoFreeGPU(description: "the instance asks for \(count) \(sku ?? "GPU") GPU(s) and this worker has \(matching.count) free")
        }
        let given = Array(matching.prefix(count))
        freeGPUs.removeAll { gpu in given.contains(gpu) }
        return given
    }

    private func boot(_ instance: Instance, gpus: Int, sku: String?) async {
        let log = BuildLog()
        let reporter = Task { [source] in
            // The boot's output reaches the server (and the waiting predictions) once a second.
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                if let text = log.takeIfChanged() { try? await source.report(instance: instance.id, InstanceReport(state: .booting, logs: text)) }
            }
        }
        defer { reporter.cancel() }
        do {
            instance.gpus = try takeGPUs(gpus, sku: sku)
            let (prepared, note) = try await source.acquire(instance.version)
            instance.acquired = true
            if let note {
                log.append(note.prefix(1).uppercased() + note.dropFirst() + ".\n")
                self.log("instance \(instance.id): \(note)")
            }
            let home = source.home, sandbox = settings.sandbox, build = settings.build, work = instance.work
            var configuration = try await onOwnThread {
                var environmentBuild = build
                environmentBuild.sandbox = sandbox
                return try prepared.configuration(home: home, workDirectory: work, sandbox: sandbox, build: environmentBuild) { log.append($0) }
            }
            // Whole GPUs, bound into the sandbox: only its own /dev/nvidiaN, named by UUID.
            configuration.gpus = GPUAccess.forInstance(instance.gpus)
            let process = ModelProcess(configuration)
            switch try await process.start() {
            case .ready(_, let logs):
                guard instances[instance.id] === instance else {
                    // Stopped while it booted.
                    process.terminate()
                    return
                }
                instance.process = process
                process.whenExited { [weak self] in Task { await self?.reapIfIdle(instance) } }
                // The build's output went out as it came; what setup() printed opens the
                // instance's first prediction.
                reporter.cancel()
                if let text = log.takeIfChanged() { try? await source.report(instance: instance.id, InstanceReport(state: .booting, logs: text)) }
                try await source.report(instance: instance.id, InstanceReport(state: .ready, logs: logs))
            case .failed(let error, let logs):
                process.terminate()
                instances.removeValue(forKey: instance.id)
                stop(instance)
                try? await source.report(instance: instance.id, InstanceReport(state: .failed, error: error, logs: log.text + logs))
            }
        } catch {
            instances.removeValue(forKey: instance.id)
            stop(instance)
            // No room is not the model's fault: the server places the boot again.
            try? await source.report(instance: instance.id, InstanceReport(state: .failed, error: "\(error)", logs: log.text,
                                                                           refused: error is NoFreeGPU ? true : nil))
        }
    }

    /// A boot that asks for more GPUs of its model than are free here (another server placed an
    /// instance on them first).
    struct NoFreeGPU: Error, CustomStringConvertible {
        var description: String
    }

    private func predict(_ command: WorkerCommand, assignment: String, prediction: String, on instance: Instance, process: ModelProcess) async {
        let inputs = instance.work.appendingPathComponent("inputs/\(prediction)", isDirectory: true)
        let outputs = instance.work.appendingPathComponent("outputs/\(prediction)", isDirectory: true)
        defer {
            // Most predictions made neither folder: a failing removal costs an error object.
            for folder in [inputs, outputs] where FileManager.default.fileExists(atPath: folder.path) { try? FileManager.default.removeItem(at: folder) }
        }
        let deadline = Date().addingTimeInterval(command.timeout ?? 1800)
        let source = self.source, id = instance.id
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
                try await source.fetchInput(instance: id, assignment: assignment, path: relative, to: target, limit: Int64(InputFiles.maxBytes) + 1)
                local[relative] = target.path
            }
            let input = (command.input ?? [:]).mapValues { Self.localize($0, local) }
            let batcher = EventBatcher(interval: source.batchInterval) { events in
                try? await source.sendEvents(instance: id, assignment: assignment, events)
            }
            outcome = await process.predict(id: prediction, input: input, context: command.context ?? [:], outputDirectory: outputs,
                                            timeout: max(0.001, deadline.timeIntervalSinceNow), checkSafety: command.checkSafety ?? false) { event in
                batcher.add(event)
            }
            await batcher.finish()
            for name in Self.files(in: outcome.output) {
                let file = outputs.appendingPathComponent(name)
                guard !name.contains("/"), FileManager.default.fileExists(atPath: file.path) else { continue }
                try await source.sendOutput(instance: id, assignment: assignment, name: name, file: file)
            }
        } catch {
            outcome = PredictionOutcome(status: .failed, error: "\(error)")
        }
        instance.assignments.removeValue(forKey: assignment)
        // A process that died with this prediction is dropped now, and the completion says so,
        // so the server never places another prediction on it.
        let stopped = !process.isRunning
        if stopped, instances[id] === instance {
            instance.reportedStop = true
            instances.removeValue(forKey: id)
            stop(instance)
        }
        do {
            try await source.complete(instance: id, assignment: assignment, WorkerCompletion(outcome: outcome, instanceStopped: stopped ? true : nil))
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
}
