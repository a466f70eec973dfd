import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import Testing
@testable import LatheCore
@testable import LatheWorker
@testable import LatheStore

/// The embedded worker's source keeps a version's manifest and config only while an instance
/// booted with it is there: a server that runs many versions over its life does not keep them all.
@Suite("the embedded worker's work source")
struct EmbeddedWorkSourceTests {
    /// Commands go nowhere: the source is tested alone.
    struct Nowhere: WorkerChannel {
        func send(_ command: WorkerCommand) {}
        func forget(_ instance: RemoteInstance) {}
    }

    @Test("a version is forgotten with the last instance booted with it")
    func versionsAreForgotten() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-source-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cache = BlobCache(store: try FilesystemBlobStore(root: folder.appendingPathComponent("blobs")), folder: folder.appendingPathComponent("cache"))
        let source = InProcessWorkSource(home: folder, blobCache: cache)
        let spec = try SpecParser.parse("predict: predict.py:Predictor\noutput: {type: string}\n")
        let config = ModelConfig(spec: spec, openapiSchema: .object([:]), requirements: [], layers: [])
        let manifest = Manifest(config: Descriptor(mediaType: "application/json", digest: Digest.of(Data("c".utf8)), size: 1), layers: [])
        func instance(_ id: String) -> RemoteInstance {
            RemoteInstance(id: id, workerID: "embedded", workerName: "embedded", tokenID: "", modelID: "m", work: folder, channel: Nowhere())
        }
        for (id, version) in [("i1", "a"), ("i2", "a"), ("i3", "b")] {
            let digest = Digest.of(Data(version.utf8))
            source.add(instance(id), version: WorkerVersion(id: version, repository: "alice/m", manifestDigest: digest.description),
                       digest: digest, manifest: manifest, config: config)
        }
        #expect(source.versionCount == 2)
        source.remove("i1")
        #expect(source.versionCount == 2, "i2 still runs version a")
        source.remove("i3")
        #expect(source.versionCount == 1)
        source.remove("i2")
        #expect(source.versionCount == 0)
    }
}

/// A boot that a worker cannot take (no free GPU of its model: another replica placed an
/// instance there first) is refused, not failed: the server places it again, and the worker's
/// version cache is left as it was.
@Suite("a boot refused for lack of a free GPU")
struct RefusedBootTests {
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
                                    work: FileManager.default.temporaryDirectory, channel: EmbeddedWorkSourceTests.Nowhere())
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
