import ArgumentParser
import Foundation
import LatheRunner
import LatheSpec
import LatheWorker

/// `lathe worker`: runs models for a registry on this machine (DESIGN §6).
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run models for a registry: register this machine's hardware, take instances and predictions, report back over HTTP.",
        discussion: "The worker needs only the registry's URL and a worker token (`lathe admin worker-token create` on the server), "
            + "read from LATHE_WORKER_TOKEN or --token-file: no database credentials, no shared disk. Versions are pulled over /v2 "
            + "into a cache under --data, checked against their digests.")

    @Option(help: "The registry's URL, e.g. https://lathe.example.com (env LATHE_REGISTRY).")
    var registry: String?

    @Option(name: .customLong("token-file"), help: "A file holding the worker token (else env LATHE_WORKER_TOKEN).")
    var tokenFile: String?

    @Option(help: "The worker's folder: version cache, environments, instance work (env LATHE_WORKER_DATA; default ./lathe-worker).")
    var data: String?

    @Option(help: "The name the registry shows for this worker (default: the host name).")
    var name: String?

    @Option(name: .customLong("max-instances"), help: "Most model instances this worker runs at once (default 2).")
    var maxInstances: Int = 2

    @Option(name: .customLong("hardware"), parsing: .singleValue,
            help: "A hardware SKU this machine offers, e.g. cpu-large (repeatable; default cpu). GPUs are detected and offered as gpu-<model>.")
    var hardware: [String] = []

    @Option(name: .customLong("cache-size"), help: "Megabytes of pulled versions kept; the least recently used that no instance runs go first (default 20480; 0 keeps only those in use).")
    var cacheSize: Int64 = 20_480

    @Option(name: .customLong("build-timeout"), help: "Minutes a model's environment build may take (default 15).")
    var buildTimeout: Int = 15

    func run() async throws {
        try await guarded {
            let environment = ProcessInfo.processInfo.environment
            guard let registry = registry ?? environment["LATHE_REGISTRY"] else {
                throw ValidationError("pass --registry URL (or set LATHE_REGISTRY): the registry this worker runs models for")
            }
            let token: String
            if let tokenFile {
                guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
                    throw ValidationError("cannot read the worker token from \(tokenFile)")
                }
                token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            } else if let value = environment["LATHE_WORKER_TOKEN"] {
                token = value.trimmingCharacters(in: .whitespacesAndNewlines)
            } else {
                throw ValidationError("no worker token: set LATHE_WORKER_TOKEN or pass --token-file (create one with `lathe admin worker-token create` on the server)")
            }
            for label in hardware where !HardwareInventory.isValidSKU(label) {
                throw ValidationError("--hardware \(label) is not a SKU: use lowercase letters, digits and '-', e.g. cpu-large")
            }
            let folder = URL(fileURLWithPath: data ?? environment["LATHE_WORKER_DATA"] ?? "lathe-worker").standardizedFileURL
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            ServeCommand.raiseDescriptorLimit()
            let sandbox = try Sandbox.detect(network: false)
            var build = EnvironmentBuild(sandbox: sandbox)
            build.timeout = TimeInterval(max(1, buildTimeout)) * 60
            let settings = WorkerAgent.Settings(
                registry: registry, token: token, folder: folder, name: name ?? ProcessInfo.processInfo.hostName,
                capacity: max(1, maxInstances), labels: hardware, cacheBytes: max(0, cacheSize).multipliedReportingOverflow(by: 1 << 20).partialValue,
                sandbox: sandbox, build: build, version: BuildInfo.version)
            print("lathe worker for \(registry) (data \(folder.path))")
            fflush(nil)
            let agent = WorkerAgent(settings: settings) { line in
                print("lathe worker: \(line)")
                fflush(nil)
            }
            // SIGTERM (systemctl stop) and SIGINT end the agent's task: it stops its instances
            // and leaves the fleet before the process exits.
            let running = Task { try await agent.run() }
            let handlers = [SIGTERM, SIGINT].map { number in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { running.cancel() }
                source.resume()
                return source
            }
            defer { handlers.forEach { $0.cancel() } }
            do {
                try await running.value
            } catch is CancellationError {
                // Stopped before it registered: nothing to leave.
            }
        }
    }
}
