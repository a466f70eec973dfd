import Foundation
import LatheClient
import LatheRunner
import NIOCore
import NIOFoundationCompat

/// `lathe worker`'s source: a registry reached over HTTP(S) with a worker token, through any
/// replica. Versions are pulled into the worker's own cache; every report is a worker-protocol
/// request, sent again when it did not arrive.
package final class HTTPWorkSource: WorkSource, @unchecked Sendable {
    private let client: RegistryClient
    private let cache: VersionCache
    private let lock = NSLock()
    private var workerID = ""
    package let batchInterval: TimeInterval

    init(client: RegistryClient, cache: VersionCache, batchInterval: TimeInterval = 0.05) {
        self.client = client
        self.cache = cache
        self.batchInterval = batchInterval
    }

    /// The id the registry gave this worker at its latest registration.
    func registered(as id: String) {
        lock.withLock { workerID = id }
    }

    package var home: URL { cache.home }

    private func instancePath(_ instance: String) -> String {
        WorkerProtocol.root + "/" + lock.withLock { workerID } + "/instances/" + instance
    }

    private func assignmentPath(_ instance: String, _ assignment: String) -> String {
        instancePath(instance) + "/assignments/" + assignment
    }

    package func acquire(_ version: WorkerVersion) async throws -> (PreparedModel, note: String?) {
        let started = Date()
        let (prepared, cached) = try await cache.acquire(version, client: client)
        let note = cached ? "version \(version.id.prefix(12)) was in this worker's cache"
                          : "pulled version \(version.id.prefix(12)) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s"
        return (prepared, note)
    }

    package func release(_ version: WorkerVersion) async {
        await cache.release(version)
    }

    package func report(instance: String, _ report: InstanceReport) async throws {
        try await post(instancePath(instance), report)
    }

    package func fetchInput(instance: String, assignment: String, path: String, to target: URL, limit: Int64) async throws {
        let source = "\(assignmentPath(instance, assignment))/inputs/\(path)"
        try await Self.resending { [client] in try await client.download(source, to: target, limit: limit) }
    }

    package func sendEvents(instance: String, assignment: String, _ events: [WorkerEvent]) async throws {
        try await post("\(assignmentPath(instance, assignment))/events", WorkerEventBatch(events: events))
    }

    package func sendOutput(instance: String, assignment: String, name: String, file: URL) async throws {
        let path = "\(assignmentPath(instance, assignment))/files/\(name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name)"
        // The server writes the whole file again on a second PUT.
        try await Self.resending { [client] in try await client.upload(.PUT, path, file: file, expect: [201]) }
    }

    package func complete(instance: String, assignment: String, _ completion: WorkerCompletion) async throws {
        try await post("\(assignmentPath(instance, assignment))/complete", completion)
    }

    /// Sends a report. One that did not arrive is sent again (``resending(_:)``).
    private func post(_ path: String, _ body: some Encodable) async throws {
        let data = try JSONEncoder().encode(body)
        try await Self.resending { [client] in
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
