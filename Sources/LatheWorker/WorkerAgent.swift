import Foundation
import LatheArchive
import LatheClient
import LatheRunner
import LatheSpec
import NIOCore
import NIOFoundationCompat

/// `lathe worker`: registers with a registry, heartbeats, long-polls for commands and runs them
/// (DESIGN §6). It speaks only HTTP(S) to the server, with a worker token: no database, no
/// shared disk. When the server forgets it (restart, or it was counted lost) it registers again.
public final class WorkerAgent: Sendable {
    public struct Settings: Sendable {
        public var registry: String
        public var token: String
        /// The worker's own folder: version cache, environments, instance work.
        public var folder: URL
        public var name: String
        /// Most instances at once.
        public var capacity: Int
        /// Hardware labels the operator gives this machine (`cpu` when none).
        public var labels: [String]
        /// Most bytes of pulled versions kept.
        public var cacheBytes: Int64
        public var sandbox: Sandbox?
        public var build: EnvironmentBuild
        public var version: String

        public init(registry: String, token: String, folder: URL, name: String, capacity: Int, labels: [String], cacheBytes: Int64,
                    sandbox: Sandbox?, build: EnvironmentBuild, version: String) {
            self.registry = registry
            self.token = token
            self.folder = folder
            self.name = name
            self.capacity = capacity
            self.labels = labels
            self.cacheBytes = cacheBytes
            self.sandbox = sandbox
            self.build = build
            self.version = version
        }
    }

    private let settings: Settings
    private let log: @Sendable (String) -> Void

    /// `log` gets one line per event worth an operator's attention.
    public init(settings: Settings, log: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.log = log
    }

    /// Runs until the task is cancelled (SIGTERM), then stops its instances and leaves the fleet.
    public func run() async throws {
        let client = RegistryClient(base: settings.registry, token: settings.token)
        defer { Task { await client.shutdown() } }
        let hardware = HardwareInventory.detect(labels: settings.labels)
        let cache = try VersionCache(folder: settings.folder, limit: settings.cacheBytes)
        let source = HTTPWorkSource(client: client, cache: cache)
        let instances = WorkerInstances(source: source, folder: settings.folder, gpus: hardware.gpus,
                                        settings: .init(sandbox: settings.sandbox, build: settings.build), log: log)
        var delay: UInt64 = 1
        var current: String?
        while !Task.isCancelled {
            let registered: WorkerRegistered
            do {
                let body = try JSONEncoder().encode(WorkerRegistration(name: settings.name, version: settings.version, hardware: hardware,
                                                                       capacity: settings.capacity, cached: await cache.cached))
                let reply = try await client.send(.POST, WorkerProtocol.root + "/register", headers: [("Content-Type", "application/json")],
                                                  body: .bytes(ByteBuffer(data: body)), expect: [201], timeout: 5)
                registered = try JSONDecoder().decode(WorkerRegistered.self, from: reply.body)
            } catch let failure as RegistryClient.Failure where failure.status == 401 {
                throw Diagnostic(nil, "\(settings.registry) refused this worker: \(failure.message)",
                                 fix: "create a token with `lathe admin worker-token create` on the server and pass it in LATHE_WORKER_TOKEN or --token-file")
            } catch {
                log("cannot register with \(settings.registry): \(error); trying again in \(delay) s")
                try await Task.sleep(nanoseconds: delay * 1_000_000_000)
                delay = min(delay * 2, 30)
                continue
            }
            delay = 1
            await instances.registered()
            source.registered(as: registered.id)
            current = registered.id
            log("registered as \(registered.id) (\(settings.name)): offers \(hardware.skus.joined(separator: ", ")), \(settings.capacity) instance(s)")
            await serve(registered, client: client, cache: cache, instances: instances)
            if !Task.isCancelled { log("the registry no longer knows this worker; registering again") }
        }
        // Shutting down: the server ends what ran here now (it runs again elsewhere when it had
        // emitted nothing), instead of after counting this worker lost. The request runs in a
        // task of its own: this one is cancelled.
        await instances.stopAll()
        guard let current else { return }
        let leave = Task { try await client.send(.DELETE, WorkerProtocol.root + "/" + current, expect: [204], timeout: 5) }
        do {
            _ = try await leave.value
            log("left the fleet")
        } catch {
            log("could not leave the fleet (the registry counts this worker lost once it is silent): \(error)")
        }
    }

    /// Heartbeats and long polls until the server says it does not know this worker.
    private func serve(_ registered: WorkerRegistered, client: RegistryClient, cache: VersionCache, instances: WorkerInstances) async {
        let base = WorkerProtocol.root + "/" + registered.id
        let forgotten = ForgottenFlag()
        let heartbeat = Task {
            while !Task.isCancelled && !forgotten.value {
                try? await Task.sleep(nanoseconds: UInt64(registered.heartbeatSeconds * 1_000_000_000))
                await instances.reapCrashed()
                let beat = WorkerHeartbeat(cached: await cache.cached, instances: await instances.instanceIDs)
                guard let body = try? JSONEncoder().encode(beat) else { continue }
                do {
                    try await client.send(.POST, base + "/heartbeat", headers: [("Content-Type", "application/json")],
                                          body: .bytes(ByteBuffer(data: body)), expect: [204], timeout: max(5, registered.heartbeatSeconds * 2))
                } catch let failure as RegistryClient.Failure where failure.status == 404 {
                    forgotten.set()
                } catch {
                    log("heartbeat failed: \(error)")
                }
            }
        }
        defer { heartbeat.cancel() }
        var failures = 0
        // The highest command number received: named in the next poll, which acknowledges it (a
        // command whose answer was lost on the way comes again; one seen already is skipped).
        var received: Int64 = 0
        while !Task.isCancelled && !forgotten.value {
            do {
                // A poll the server never answers (a dead connection) ends a little after its wait.
                let reply = try await client.send(.GET, base + "/work?wait=\(registered.pollSeconds)&after=\(received)", expect: [200], limit: 64 << 20,
                                                  timeout: registered.pollSeconds + 10)
                failures = 0
                for command in try JSONDecoder().decode(WorkerWork.self, from: reply.body).commands {
                    if let seq = command.seq {
                        guard seq > received else { continue }
                        received = seq
                    }
                    await instances.handle(command)
                }
            } catch let failure as RegistryClient.Failure where failure.status == 404 || failure.status == 401 {
                // Forgotten (register again), or the token was revoked (registering says so and stops).
                return
            } catch {
                if Task.isCancelled { return }
                failures += 1
                log("asking for work failed: \(error)")
                try? await Task.sleep(nanoseconds: UInt64(min(failures, 5)) * 1_000_000_000)
            }
        }
    }
}

/// Set once the server answered 404 for this registration.
final class ForgottenFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var value: Bool { lock.withLock { flag } }
    func set() { lock.withLock { flag = true } }
}
