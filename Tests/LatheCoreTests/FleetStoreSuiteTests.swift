import Foundation
import Logging
@testable import LatheCore
@testable import LatheStore
import LatheRunner
import LatheSpec
import Testing

/// The server's side of an instance on a remote worker: commands out through the fleet's long
/// poll, reports in, and what happens when the worker is late, lost or silent. The fleet lives
/// in the metadata store, so every test runs on SQLite and (when configured) PostgreSQL.
@Suite("StoreSuite: the fleet (workers, their instances and commands) and a remote instance as the server sees it, on SQLite and PostgreSQL", .serialized)
struct FleetStoreSuiteTests {
    /// Polls as a worker does: naming the last command number it received.
    let polls = PollCursor()
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-remote-\(UUID().uuidString)")

    /// A fleet on a fresh database of `backend`, joined to `events` as replica `replica`.
    static func fleet(_ backend: StoreSuiteTests.Backend, events: any PredictionEvents = LocalEvents(), replica: String = "r1",
                      database: RegistryDatabase? = nil) async throws -> WorkerFleet {
        let opened: RegistryDatabase
        if let database { opened = database } else { opened = try await StoreSuiteTests.open(backend) }
        let database = opened
        let fleet = WorkerFleet(store: WorkerStore(database: database))
        fleet.connect(events: events, replica: replica, url: { "http://\(replica).invalid" }, logger: Logger(label: "test"))
        events.subscribe { event in
            switch event {
            case .workerCommands(let id): fleet.commandsWaiting(for: id)
            case .workerLost(let id, let why): fleet.lostElsewhere(id, why)
            default: break
            }
        }
        return fleet
    }

    /// Two replicas' fleets ("ra" and "rb") on one fresh database of `backend`, hearing each other.
    static func twoReplicas(_ backend: StoreSuiteTests.Backend) async throws -> (WorkerFleet, WorkerFleet, RegistryDatabase) {
        let database = try await StoreSuiteTests.open(backend)
        let events = LocalEvents()
        return (try await fleet(backend, events: events, replica: "ra", database: database),
                try await fleet(backend, events: events, replica: "rb", database: database), database)
    }

    static func worker(_ fleet: WorkerFleet, name: String = "w", capacity: Int = 2) async throws -> String {
        let hardware = HardwareInventory(cpus: 2, memoryBytes: 1 << 30, gpus: [], labels: [])
        return try await fleet.register(WorkerRegistration(name: name, version: "test", hardware: hardware, capacity: capacity, cached: []), tokenID: "t").id
    }

    /// A ready instance on a fresh worker (the boot command taken, ready reported).
    func ready(_ fleet: WorkerFleet, backstop: TimeInterval = 15) async throws -> (RemoteInstance, String) {
        let id = try await Self.worker(fleet)
        let instance = RemoteInstance(id: "i-1", workerID: id, workerName: "w", tokenID: "t", modelID: "m", work: work, channel: FleetChannel(workerID: id, fleet: fleet), backstop: backstop)
        #expect(await fleet.add(instance))
        async let booted = instance.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 0, sku: "cpu") { _ in }
        let boot = await polls.next(fleet, id, wait: 5)
        #expect(boot.map(\.kind) == [.boot] && boot.first?.instance == "i-1")
        instance.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }
        return (instance, id)
    }

    @Test("a boot the worker never got is sent again when its heartbeats do not list the instance; an instance the server does not know is stopped",
          arguments: StoreSuiteTests.backends)
    func lostBootIsSentAgain(_ backend: StoreSuiteTests.Backend) async throws {
        let fleet = try await Self.fleet(backend)
        let id = try await Self.worker(fleet)
        let instance = RemoteInstance(id: "i-2", workerID: id, workerName: "w", tokenID: "t", modelID: "m", work: work, channel: FleetChannel(workerID: id, fleet: fleet))
        #expect(await fleet.add(instance))
        async let booted = instance.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 0, sku: "cpu") { _ in }
        // The long poll's answer carrying the boot is lost on the way.
        let lost = await polls.next(fleet, id, wait: 5)
        #expect(lost.map(\.kind) == [.boot])
        let grace = fleet.settings.heartbeat * 2
        // A heartbeat within the grace (sent before the boot could have arrived) changes nothing.
        try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []))
        #expect(await polls.next(fleet, id, wait: 0).isEmpty)
        // Later, still not listed: the same boot goes out again.
        try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []), now: Date().addingTimeInterval(grace + 1))
        let again = await polls.next(fleet, id, wait: 1)
        #expect(again.map(\.kind) == [.boot] && again.first?.instance == "i-2" && again.first?.version?.id == "v")
        // Listed as booting: nothing more is sent.
        try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: ["i-2"]), now: Date().addingTimeInterval(3 * grace + 3))
        #expect(await polls.next(fleet, id, wait: 0).isEmpty)
        instance.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }
        // Ready instances are never booted again, whatever a heartbeat says.
        try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []), now: Date().addingTimeInterval(10 * grace))
        #expect(await polls.next(fleet, id, wait: 0).isEmpty)
        // The worker runs an instance this server does not know (it gave up on it, or restarted): stopped.
        try await fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: ["i-2", "i-forgotten"]))
        let stop = await polls.next(fleet, id, wait: 1)
        #expect(stop.map(\.kind) == [.stop] && stop.first?.instance == "i-forgotten")
    }

    @Test("a prediction's command carries an assignment; reports for it land once, then are refused", arguments: StoreSuiteTests.backends)
    func assignments(_ backend: StoreSuiteTests.Backend) async throws {
        let fleet = try await Self.fleet(backend)
        let (instance, worker) = try await ready(fleet)
        let events = EventsSeen()
        async let outcome = instance.predict(id: "p1", input: ["text": .string("hi"), "image": .string(work.path + "/inputs/p1/f/a.png")],
                                             context: ["tenant": "acme"], outputDirectory: work, timeout: 30, checkSafety: false) { events.add($0) }
        let command = try #require(await polls.next(fleet, worker, wait: 5).first)
        #expect(command.kind == .predict && command.prediction == "p1" && command.inputFiles == ["f/a.png"])
        #expect(command.input?["image"] == .string("f/a.png") && command.input?["text"] == .string("hi"))
        #expect(command.context == ["tenant": "acme"], "the request's context reaches the worker")
        let assignment = try #require(command.assignment)
        #expect(instance.events(assignment, [WorkerEvent(.log("one\n")), WorkerEvent(.output(index: 0, value: .string("a")))]))
        #expect(instance.inputFile(assignment, path: "f/a.png") != nil)
        #expect(instance.inputFile(assignment, path: "../x") == nil && instance.inputFile(assignment, path: "f/../../x") == nil)
        #expect(instance.outputFile(assignment, name: "../escape") == nil && instance.outputFile(assignment, name: "out.png") != nil)
        #expect(instance.complete(assignment, PredictionOutcome(status: .succeeded, output: .string("done"))))
        #expect(await outcome.status == .succeeded)
        #expect(events.count == 2)
        // Late or repeated reports for an assignment no longer held are refused (409 upstream).
        #expect(!instance.complete(assignment, PredictionOutcome(status: .failed)))
        #expect(!instance.events(assignment, [WorkerEvent(.log("late"))]))
        #expect(!instance.complete("a-made-up", PredictionOutcome(status: .succeeded)))
    }

    @Test("a lost worker: silent predictions may run again, ones that spoke fail with their logs", arguments: StoreSuiteTests.backends)
    func lost(_ backend: StoreSuiteTests.Backend) async throws {
        let fleet = try await Self.fleet(backend)
        let (instance, worker) = try await ready(fleet)
        async let silent = instance.predict(id: "quiet", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        async let talking = instance.predict(id: "loud", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        var commands: [WorkerCommand] = []
        while commands.count < 2 { commands += await polls.next(fleet, worker, wait: 5) }
        let loud = try #require(commands.first { $0.prediction == "loud" }?.assignment)
        #expect(instance.events(loud, [WorkerEvent(.log("working\n"))]))
        // Nothing heard for longer than the limit, counted from the last poll's deadline (5 s;
        // its early answer is written off the answer's path): the worker is lost.
        #expect(await fleet.sweep(now: Date().addingTimeInterval(fleet.settings.lostAfter + 6)) == ["w"])
        let (quiet, spoke) = await (silent, talking)
        #expect(quiet.status == .failed && quiet.error?.contains("worker w (\(worker)) was lost") == true)
        #expect(spoke.status == .failed && spoke.logs == "working\n")
        #expect(instance.takeRetry("quiet") && !instance.takeRetry("quiet"))
        #expect(!instance.takeRetry("loud"))
        #expect(!instance.isRunning)
        // Whatever it says when it comes back is refused.
        #expect(!instance.complete(loud, PredictionOutcome(status: .succeeded)))
        #expect(fleet.instance("i-1", on: worker) == nil)
    }

    @Test("the server fails a prediction the worker never answers, after its timeout and the backstop", arguments: StoreSuiteTests.backends)
    func backstop(_ backend: StoreSuiteTests.Backend) async throws {
        let fleet = try await Self.fleet(backend)
        let (instance, worker) = try await ready(fleet, backstop: 0.2)
        let started = Date()
        async let outcome = instance.predict(id: "p", input: [:], context: [:], outputDirectory: work, timeout: 0.1, checkSafety: false) { _ in }
        _ = await polls.next(fleet, worker, wait: 5)
        let result = await outcome
        #expect(result.status == .failed && result.error?.contains("did not answer") == true)
        #expect(Date().timeIntervalSince(started) >= 0.3)
    }

    @Test("a cancel is queued for the worker's long poll at once", arguments: StoreSuiteTests.backends)
    func cancel(_ backend: StoreSuiteTests.Backend) async throws {
        let fleet = try await Self.fleet(backend)
        let (instance, worker) = try await ready(fleet)
        async let outcome = instance.predict(id: "p", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        let assignment = try #require(await polls.next(fleet, worker, wait: 5).first?.assignment)
        let started = Date()
        async let next = polls.next(fleet, worker, wait: 5)
        try await Task.sleep(nanoseconds: 50_000_000)
        instance.cancel(id: "p")
        let commands = await next
        #expect(commands.map(\.kind) == [.cancel] && commands.first?.assignment == assignment)
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(instance.complete(assignment, PredictionOutcome(status: .canceled)))
        #expect(await outcome.status == .canceled)
    }
}

extension FleetStoreSuiteTests {
    /// Commands handed to a worker inside the replica, in order.
    final class Inbox: LocalWorker, @unchecked Sendable {
        private let lock = NSLock()
        private var received: [WorkerCommand] = []
        var commands: [WorkerCommand] { lock.withLock { received } }
        var id: String? { lock.withLock { joinedAs } }
        private var joinedAs: String?
        func joined(as id: String) { lock.withLock { joinedAs = id } }
        func send(_ command: WorkerCommand) { lock.withLock { received.append(command) } }
    }

    @Test("a worker inside a replica (lathe serve's embedded worker) is a row of the fleet: every replica sees it and its home, no worker token speaks for it, its commands are handed over in process, its capacity is kept in the store, and it is counted lost when silent like any worker",
          arguments: StoreSuiteTests.backends)
    func localWorker(_ backend: StoreSuiteTests.Backend) async throws {
        let (home, other, _) = try await Self.twoReplicas(backend)
        let inbox = Inbox()
        let hardware = HardwareInventory(cpus: 2, memoryBytes: 1 << 30, gpus: [GPU(index: 0, uuid: "GPU-0", model: "NVIDIA A100", memoryMiB: 81920)], labels: [])
        let registration = WorkerRegistration(name: "embedded in ra", version: "test", hardware: hardware, capacity: 1, cached: [])
        let id = try await home.register(registration, tokenID: "embedded", local: inbox).id
        #expect(inbox.id == id, "told its id before anyone could place on it")
        try await other.refresh()
        let seen = try #require(other.workers.first { $0.id == id })
        #expect(seen.home == "ra" && seen.hardware.skus.contains("gpu-a100"), "the other replica sees it, and whose it is")
        #expect(try await other.touch(id, tokenID: "t") == nil, "a worker token cannot speak for it")

        let instance = RemoteInstance(id: "i-e", workerID: id, workerName: registration.name, tokenID: "embedded", modelID: "m", work: work,
                                      channel: FleetChannel(workerID: id, fleet: home))
        #expect(await home.add(instance))
        #expect(!(await other.add(RemoteInstance(id: "i-x", workerID: id, workerName: registration.name, tokenID: "embedded", modelID: "m", work: work,
                                                channel: FleetChannel(workerID: id, fleet: other)))), "its capacity (1) is kept in the store")
        async let booted = instance.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 1, sku: "gpu-a100") { _ in }
        let deadline = Date().addingTimeInterval(5)
        while inbox.commands.isEmpty && Date() < deadline { try await Task.sleep(nanoseconds: 1_000_000) }
        #expect(inbox.commands.map(\.kind) == [.boot] && inbox.commands.first?.instance == "i-e", "handed over in process")
        #expect(await polls.next(home, id, wait: 0).isEmpty, "nothing goes through the store for a long poll")
        #expect(home.instance("i-e", on: id) === instance, "its reports find the instance as a remote worker's do")
        instance.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }

        // Heartbeats keep it; silence (its replica died) counts it lost on every replica.
        try await home.heartbeat(id, WorkerHeartbeat(cached: [], instances: ["i-e"]))
        let lost = await other.sweep(now: Date().addingTimeInterval(other.settings.lostAfter + 6))
        #expect(lost == ["embedded in ra"])
        #expect(!instance.isRunning, "its instance ended with it")
        #expect(try await home.touch(id, tokenID: "embedded") == nil, "it registers again")

        // Its server shuts down: the row goes at once, for every replica.
        let again = try await home.register(registration, tokenID: "embedded", local: inbox).id
        try await other.refresh()
        #expect(other.workers.contains { $0.id == again })
        await home.leave(again)
        try await other.refresh()
        #expect(!other.workers.contains { $0.id == again }, "no replica lists a worker that left")
    }


    @Test("two replicas, one fleet in the store: either serves the worker, commands reach the poll wherever it is held, capacity is shared and never overfilled, a dead replica's instances are stopped, a lost worker ends instances on every replica",
          arguments: StoreSuiteTests.backends)
    func twoReplicas(_ backend: StoreSuiteTests.Backend) async throws {
        let (a, b, database) = try await Self.twoReplicas(backend)
        let worker = try await Self.worker(a, capacity: 2)
        // Registered through A, known to B (from the store), and only with its own token.
        #expect(try await b.touch(worker, tokenID: "t")?.name == "w")
        #expect(try await b.touch(worker, tokenID: "someone-else") == nil)
        try await b.refresh()
        #expect(b.workers.map(\.id) == [worker])

        // A places an instance; the worker's long poll is held by B: the boot reaches it at once.
        let placed = RemoteInstance(id: "i-a", workerID: worker, workerName: "w", tokenID: "t", modelID: "m", work: work, channel: FleetChannel(workerID: worker, fleet: a))
        #expect(await a.add(placed))
        async let poll = polls.next(b, worker, wait: 5)
        try await Task.sleep(nanoseconds: 100_000_000)
        let sent = Date()
        async let booted = placed.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 0, sku: "cpu") { _ in }
        let commands = await poll
        #expect(commands.map(\.kind) == [.boot] && commands.first?.instance == "i-a")
        #expect(Date().timeIntervalSince(sent) < 0.1, "a command reaches a poll held by another replica within 100 ms")
        // B knows who placed it (a report reaching B is relayed there).
        #expect(try await b.owner(of: "i-a", on: worker)?.replica == "ra")
        #expect(b.instance("i-a", on: worker) == nil && a.instance("i-a", on: worker) === placed)
        placed.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }

        // The worker's capacity (2) is shared: B places one more, then it is full for both.
        let second = RemoteInstance(id: "i-b", workerID: worker, workerName: "w", tokenID: "t", modelID: "m", work: work, channel: FleetChannel(workerID: worker, fleet: b))
        #expect(await b.add(second))
        #expect(!(await a.add(RemoteInstance(id: "i-c", workerID: worker, workerName: "w", tokenID: "t", modelID: "m", work: work, channel: FleetChannel(workerID: worker, fleet: a)))))
        try await a.refresh()
        #expect(a.workers.first?.elsewhere == 1, "A counts B's instance against the worker")
        let (may, mayNot) = (await a.mayPull(tokenID: "t", modelID: "m"), await a.mayPull(tokenID: "t", modelID: "other"))
        #expect(may && !mayNot, "a worker token pulls only what runs on it")

        // Twelve replicas racing for a worker with room for three: exactly three win.
        let racer = try await Self.worker(a, name: "race", capacity: 3)
        let store = WorkerStore(database: database)
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<12 {
                group.addTask {
                    try await store.reserve(WorkerInstanceRecord(id: "race-\(index)", workerID: racer, replica: "r\(index)", replicaURL: "",
                                                                 tokenID: "t", modelID: "m"), until: Date().addingTimeInterval(30))
                }
            }
            var count = 0
            for try await won in group where won { count += 1 }
            return count
        }
        #expect(wins == 3)

        // A dies (stops renewing): its instance is forgotten, its slot frees, and the worker's
        // next heartbeat (through B) gets a stop for it.
        let now = Date()
        try await store.renew(replica: "rb", until: now.addingTimeInterval(300))
        try await store.renew(replica: "ra", until: now.addingTimeInterval(30))
        let expired = try await store.expireInstances(now: now.addingTimeInterval(60))
        #expect(expired.contains { $0.id == "i-a" } && !expired.contains { $0.id == "i-b" })
        try await b.heartbeat(worker, WorkerHeartbeat(cached: [], instances: ["i-a", "i-b"]))
        let stops = await polls.next(b, worker, wait: 1)
        #expect(stops.map(\.kind) == [.stop] && stops.first?.instance == "i-a")

        // The worker goes silent: whichever replica sweeps counts it lost once, and the
        // instances every replica placed there end. Silence counts from the last poll's
        // deadline (1 s) until its early answer is written, which happens off the answer's path.
        let later = Date().addingTimeInterval(b.settings.lostAfter + 2)
        let lost = await b.sweep(now: later)
        #expect(lost.sorted() == ["race", "w"])
        #expect(await a.sweep(now: later).isEmpty)
        #expect(!second.isRunning && !placed.isRunning)
        #expect(try await b.touch(worker, tokenID: "t") == nil, "it registers again")
    }
}

extension FleetStoreSuiteTests {
    @Test("a command for a worker whose long poll another replica holds reaches it within 100 ms p99 (NOTIFY wakes that replica on PostgreSQL)",
          arguments: StoreSuiteTests.backends)
    func commandLatencyAcrossReplicas(_ backend: StoreSuiteTests.Backend) async throws {
        let (database, url) = try await StoreSuiteTests.openWithURL(backend)
        let buses = try QueueStoreSuiteTests.buses(backend, database, url: url)
        let services = buses.compactMap { $0 as? PostgresEvents }.map { bus in Task { try await bus.run() } }
        defer { services.forEach { $0.cancel() } }
        let a = try await Self.fleet(backend, events: buses[0], replica: "ra", database: database)
        let b = try await Self.fleet(backend, events: buses[buses.count - 1], replica: "rb", database: database)
        try await QueueStoreSuiteTests.eventually { buses.filter(\.isLeader).count == 1 }
        try await Task.sleep(nanoseconds: 300_000_000)
        let worker = try await Self.worker(a)
        var delays: [Double] = []
        for round in 0..<60 {
            async let poll = polls.next(b, worker, wait: 5)
            try await Task.sleep(nanoseconds: 20_000_000)
            let sent = Date()
            a.send(worker, WorkerCommand(kind: .stop, instance: "i-\(round)"))
            let commands = await poll
            delays.append(Date().timeIntervalSince(sent))
            #expect(commands.map(\.instance) == ["i-\(round)"])
        }
        let p99 = delays.sorted()[Int(Double(delays.count - 1) * 0.99)]
        #expect(p99 < 0.1, "p99 \(Int(p99 * 1000)) ms")
        for why in [WorkerLoss.silent, .replaced, .left] {
            #expect(RegistryEvent(payload: RegistryEvent.workerLost("w-1", why).payload) == .workerLost("w-1", why))
        }
        #expect(RegistryEvent(payload: RegistryEvent.workerCommands("w-1").payload) == .workerCommands("w-1"))
        #expect(RegistryEvent(payload: RegistryEvent.fleetChanged.payload) == .fleetChanged)
        #expect(RegistryEvent(payload: RegistryEvent.roomWanted("gpu-a100").payload) == .roomWanted("gpu-a100"))
    }
}

extension FleetStoreSuiteTests {
    @Test("a poll's answer lost on the way (its replica died mid-answer) is sent again until the worker acknowledges it", arguments: StoreSuiteTests.backends)
    func unacknowledgedCommandsComeAgain(_ backend: StoreSuiteTests.Backend) async throws {
        let (a, b, _) = try await Self.twoReplicas(backend)
        let worker = try await Self.worker(a)
        a.send(worker, WorkerCommand(kind: .stop, instance: "i-1"))
        a.send(worker, WorkerCommand(kind: .stop, instance: "i-2"))
        // The second may reach the store after the first poll answered: nothing is acknowledged
        // yet, so asking again (once it is stored) gets both.
        var first = await a.poll(worker, wait: 2)
        for _ in 0..<200 where first.count < 2 {
            try await Task.sleep(nanoseconds: 10_000_000)
            first = await a.poll(worker, wait: 1)
        }
        #expect(first.map(\.instance) == ["i-1", "i-2"] && first.allSatisfy { $0.seq != nil })
        // That answer never arrived: the worker asks again (through another replica) naming what it had before.
        let again = await b.poll(worker, wait: 0, after: 0)
        #expect(again.map(\.seq) == first.map(\.seq))
        // It names the last one it received: they are gone for good.
        let last = try #require(again.last?.seq)
        #expect(await b.poll(worker, wait: 0, after: last).isEmpty)
        #expect(await a.poll(worker, wait: 0, after: 0).isEmpty)
    }
}

/// A worker's side of the long poll: the highest command number received, acknowledged by the
/// next poll; a command seen already is skipped.
final class PollCursor: @unchecked Sendable {
    private let lock = NSLock()
    private var received: [String: Int64] = [:]

    func next(_ fleet: WorkerFleet, _ worker: String, wait: TimeInterval) async -> [WorkerCommand] {
        let after = lock.withLock { received[worker] ?? 0 }
        let commands = await fleet.poll(worker, wait: wait, after: after)
        return lock.withLock {
            commands.filter { command in
                guard let seq = command.seq else { return true }
                guard seq > received[worker] ?? 0 else { return false }
                received[worker] = seq
                return true
            }
        }
    }
}

final class EventsSeen: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [RunnerEvent] = []
    func add(_ event: RunnerEvent) { lock.withLock { events.append(event) } }
    var count: Int { lock.withLock { events.count } }
}
