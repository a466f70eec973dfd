import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Testing
@testable import LatheCore
@testable import LatheWorker
@testable import LatheStore

/// A boot that a worker cannot take (no free GPU of its model: another replica placed an
/// instance there first) is refused, not failed: the server places it again, and the worker's
/// version cache is left as it was.
@Suite("a boot refused for lack of a free GPU")
struct RefusedBootTests {
    /// Commands go nowhere: the instance is tested alone.
    struct Nowhere: WorkerChannel {
        func send(_ command: WorkerCommand) {}
        func forget(_ instance: RemoteInstance) {}
    }

    /// Records what the worker code reports and releases.
    final class Recorder: WorkSource, @unchecked Sendable {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-refused-\(UUID().uuidString)")
        let batchInterval: TimeInterval = 0
        let lock = NSLock()
        var reports: [InstanceReport] = []
        var acquired = 0, released = 0
        func acquire(_ version: WorkerVersion) async throws -> (PreparedModel, note: String?) {
            lock.withLock { acquired += 1 }
            throw CancellationError()
        }
        func release(_ version: WorkerVersion) async { lock.withLock { released += 1 } }
        func report(instance: String, _ report: InstanceReport) async throws { lock.withLock { reports.append(report) } }
        func fetchInput(instance: String, assignment: String, path: String, to target: URL, limit: Int64) async throws {}
        func sendEvents(instance: String, assignment: String, _ events: [WorkerEvent]) async throws {}
        func sendOutput(instance: String, assignment: String, name: String, file: URL) async throws {}
        func complete(instance: String, assignment: String, _ completion: WorkerCompletion) async throws {}
    }

    static let version = WorkerVersion(id: "v", repository: "alice/m", manifestDigest: Digest.of(Data("m".utf8)).description)

    /// Hands the worker code `boot` and returns its first report with the source's counts of
    /// acquired and released versions, once the boot's cleanup has had time to run.
    static func firstReport(of boot: WorkerCommand) async throws -> (report: InstanceReport, acquired: Int, released: Int) {
        let source = Recorder()
        defer { try? FileManager.default.removeItem(at: source.home) }
        let instances = WorkerInstances(source: source, folder: source.home, gpus: [], settings: .init(sandbox: nil, build: EnvironmentBuild(sandbox: nil)),
                                        log: { _ in })
        await instances.handle(boot)
        let deadline = Date().addingTimeInterval(10)
        while source.lock.withLock({ source.reports.isEmpty }) && Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        try await Task.sleep(nanoseconds: 100_000_000)
        let report = try #require(source.lock.withLock { source.reports.first })
        return source.lock.withLock { (report, source.acquired, source.released) }
    }

    @Test("the worker reports it refused, and releases no version it did not take")
    func workerRefuses() async throws {
        let found = try await Self.firstReport(of: WorkerCommand(kind: .boot, instance: "i1", version: Self.version, gpus: 1, sku: "gpu-a100-sxm4-80gb"))
        #expect(found.report.state == .failed && found.report.refused == true, "\(found.report)")
        #expect((found.acquired, found.released) == (0, 0))
    }

    @Test("a boot whose version could not be acquired releases nothing (the cache undid its own count)")
    func failedBootReleasesOnce() async throws {
        let found = try await Self.firstReport(of: WorkerCommand(kind: .boot, instance: "i1", version: Self.version))
        #expect(found.report.state == .failed && found.report.refused == nil, "\(found.report)")
        // The source's acquire threw: it took nothing (as the version cache undoes its own count).
        #expect((found.acquired, found.released) == (1, 0))
    }

    @Test("the server counts a refused boot as not the model's fault")
    func serverPlacesAgain() async throws {
        let remote = RemoteInstance(id: "i1", workerID: "w1", workerName: "gpu-box", tokenID: "", modelID: "m",
                                    work: FileManager.default.temporaryDirectory, channel: Nowhere())
        let answer = Task {
            try await Task.sleep(nanoseconds: 100_000_000)
            remote.report(InstanceReport(state: .failed, error: "the instance asks for 1 gpu-a100-sxm4-80gb GPU(s) and this worker has 0 free", refused: true))
        }
        let setup = await remote.boot(Self.version, gpus: 1, sku: "gpu-a100-sxm4-80gb") { _ in }
        try await answer.value
        guard case .failed = setup else { Issue.record("\(setup)"); return }
        #expect(remote.notTheModel?.contains("worker gpu-box refused it") == true, "\(remote.notTheModel ?? "nil")")
    }
}
