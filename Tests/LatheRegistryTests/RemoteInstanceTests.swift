import Foundation
@testable import LatheRegistry
import LatheRunner
import LatheSpec
import Testing

/// The server's side of an instance on a remote worker: commands out through the fleet's long
/// poll, reports in, and what happens when the worker is late, lost or silent.
@Suite("a remote instance as the server sees it")
struct RemoteInstanceTests {
    let fleet = WorkerFleet()
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-remote-\(UUID().uuidString)")

    func worker() -> String {
        let hardware = HardwareInventory(cpus: 2, memoryBytes: 1 << 30, gpus: [], labels: [])
        return fleet.register(WorkerRegistration(name: "w", version: "test", hardware: hardware, capacity: 2, cached: []), tokenID: "t").id
    }

    /// A ready instance on a fresh worker (the boot command taken, ready reported).
    func ready(backstop: TimeInterval = 15) async -> (RemoteInstance, String) {
        let id = worker()
        let instance = RemoteInstance(id: "i-1", workerID: id, workerName: "w", tokenID: "t", modelID: "m", work: work, fleet: fleet, backstop: backstop)
        fleet.add(instance)
        async let booted = instance.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 0) { _ in }
        let boot = await fleet.poll(id, wait: 5)
        #expect(boot.map(\.kind) == [.boot] && boot.first?.instance == "i-1")
        instance.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }
        return (instance, id)
    }

    @Test("a boot the worker never got is sent again when its heartbeats do not list the instance; an instance the server does not know is stopped")
    func lostBootIsSentAgain() async throws {
        let id = worker()
        let instance = RemoteInstance(id: "i-2", workerID: id, workerName: "w", tokenID: "t", modelID: "m", work: work, fleet: fleet)
        fleet.add(instance)
        async let booted = instance.boot(WorkerVersion(id: "v", repository: "a/b", manifestDigest: "sha256:00"), gpus: 0) { _ in }
        // The long poll's answer carrying the boot is lost on the way.
        let lost = await fleet.poll(id, wait: 5)
        #expect(lost.map(\.kind) == [.boot])
        let grace = fleet.settings.heartbeat * 2
        // A heartbeat within the grace (sent before the boot could have arrived) changes nothing.
        fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []))
        #expect(await fleet.poll(id, wait: 0).isEmpty)
        // Later, still not listed: the same boot goes out again.
        fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []), now: Date().addingTimeInterval(grace + 1))
        let again = await fleet.poll(id, wait: 0)
        #expect(again.map(\.kind) == [.boot] && again.first?.instance == "i-2" && again.first?.version?.id == "v")
        // Listed as booting: nothing more is sent.
        fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: ["i-2"]), now: Date().addingTimeInterval(3 * grace + 3))
        #expect(await fleet.poll(id, wait: 0).isEmpty)
        instance.report(InstanceReport(state: .ready))
        if case .ready = await booted {} else { Issue.record("the boot did not end ready") }
        // Ready instances are never booted again, whatever a heartbeat says.
        fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: []), now: Date().addingTimeInterval(10 * grace))
        #expect(await fleet.poll(id, wait: 0).isEmpty)
        // The worker runs an instance this server does not know (it gave up on it, or restarted): stopped.
        fleet.heartbeat(id, WorkerHeartbeat(cached: [], instances: ["i-2", "i-forgotten"]))
        let stop = await fleet.poll(id, wait: 0)
        #expect(stop.map(\.kind) == [.stop] && stop.first?.instance == "i-forgotten")
    }

    @Test("a prediction's command carries an assignment; reports for it land once, then are refused")
    func assignments() async throws {
        let (instance, worker) = await ready()
        let events = EventsSeen()
        async let outcome = instance.predict(id: "p1", input: ["text": .string("hi"), "image": .string(work.path + "/inputs/p1/f/a.png")],
                                             context: ["tenant": "acme"], outputDirectory: work, timeout: 30, checkSafety: false) { events.add($0) }
        let command = try #require(await fleet.poll(worker, wait: 5).first)
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

    @Test("a lost worker: silent predictions may run again, ones that spoke fail with their logs")
    func lost() async throws {
        let (instance, worker) = await ready()
        async let silent = instance.predict(id: "quiet", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        async let talking = instance.predict(id: "loud", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        var commands: [WorkerCommand] = []
        while commands.count < 2 { commands += await fleet.poll(worker, wait: 5) }
        let loud = try #require(commands.first { $0.prediction == "loud" }?.assignment)
        #expect(instance.events(loud, [WorkerEvent(.log("working\n"))]))
        // Nothing heard for longer than the limit: the worker is lost.
        #expect(fleet.expire(now: Date().addingTimeInterval(fleet.settings.lostAfter + 1)) == ["w"])
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

    @Test("the server fails a prediction the worker never answers, after its timeout and the backstop")
    func backstop() async {
        let (instance, worker) = await ready(backstop: 0.2)
        let started = Date()
        async let outcome = instance.predict(id: "p", input: [:], context: [:], outputDirectory: work, timeout: 0.1, checkSafety: false) { _ in }
        _ = await fleet.poll(worker, wait: 5)
        let result = await outcome
        #expect(result.status == .failed && result.error?.contains("did not answer") == true)
        #expect(Date().timeIntervalSince(started) >= 0.3)
    }

    @Test("a cancel is queued for the worker's long poll at once")
    func cancel() async throws {
        let (instance, worker) = await ready()
        async let outcome = instance.predict(id: "p", input: [:], context: [:], outputDirectory: work, timeout: 30, checkSafety: false) { _ in }
        let assignment = try #require(await fleet.poll(worker, wait: 5).first?.assignment)
        let started = Date()
        async let next = fleet.poll(worker, wait: 5)
        try await Task.sleep(nanoseconds: 50_000_000)
        instance.cancel(id: "p")
        let commands = await next
        #expect(commands.map(\.kind) == [.cancel] && commands.first?.assignment == assignment)
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(instance.complete(assignment, PredictionOutcome(status: .canceled)))
        #expect(await outcome.status == .canceled)
    }
}

final class EventsSeen: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [RunnerEvent] = []
    func add(_ event: RunnerEvent) { lock.withLock { events.append(event) } }
    var count: Int { lock.withLock { events.count } }
}
