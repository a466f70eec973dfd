import AsyncHTTPClient
import Foundation
import Hummingbird
import LatheRunner
import Logging
import NIOCore
import NIOFoundationCompat
import LatheStore
import LatheCore

/// `/internal/v1/workers/…`: the worker protocol (docs/worker-protocol.md). Only requests with
/// a worker token get here; every route under a worker id checks that the same token
/// registered it, and every report names the instance and assignment it is about.
struct WorkerRoutes {
    let fleet: WorkerFleet
    let logger: Logger

    /// The largest report a worker sends (a completion carries the prediction's logs, up to 8 MiB).
    static let maxReportBytes = 24 << 20
    /// The largest output file a worker may upload.
    static let maxOutputBytes: Int64 = 8 << 30

    func add(to router: Router<RegistryContext>) {
        let group = router.group("internal/v1/workers").add(middleware: ProblemMiddleware())
        group.post("register") { request, context -> Response in
            let token = try workerToken(context)
            let registration = try await JSONBodyDecoder(limit: Self.maxReportBytes).decode(WorkerRegistration.self, from: request, context: context)
            guard !registration.name.isEmpty, registration.name.utf8.count <= 128 else {
                throw RegistryError(400, "the worker's name must be 1 to 128 characters")
            }
            let labels = registration.hardware.labels
            guard labels.count <= 64, labels.allSatisfy(HardwareInventory.isValidSKU) else {
                throw RegistryError(400, "hardware labels must be at most 64 SKUs of lowercase letters, digits and '-', e.g. cpu-large")
            }
            let answer = try await fleet.register(registration, tokenID: token.id)
            logger.info("worker registered", metadata: ["worker": "\(answer.id)", "name": "\(registration.name)",
                                                        "skus": "\(registration.hardware.skus.joined(separator: ","))",
                                                        "capacity": "\(registration.capacity)"])
            return try encoded(answer, status: .created)
        }
        // The worker shuts down: it leaves the fleet now, and what ran on it ends now.
        group.delete(":worker") { _, context -> Response in
            let member = try await worker(context)
            await fleet.leave(member.id)
            logger.info("worker left", metadata: ["worker": "\(member.id)", "name": "\(member.name)"])
            return Response(status: .noContent)
        }
        group.post(":worker/heartbeat") { request, context -> Response in
            let member = try await worker(context)
            try await fleet.heartbeat(member.id, try await JSONBodyDecoder(limit: Self.maxReportBytes).decode(WorkerHeartbeat.self, from: request, context: context))
            return Response(status: .noContent)
        }
        group.get(":worker/work") { request, context -> Response in
            let member = try await worker(context)
            let wait = request.uri.queryParameters["wait"].flatMap { Double(String($0)) }.map { $0.isFinite ? $0 : 0 } ?? 0
            // The highest command number the worker received (it acknowledges them).
            let after = request.uri.queryParameters["after"].flatMap { Int64(String($0)) } ?? 0
            let commands = await fleet.poll(member.id, wait: wait, after: after)
            return try encoded(WorkerWork(commands: commands))
        }
        // Reports about an instance go to the replica that placed it (relayed from any other).
        group.post(":worker/instances/:instance") { request, context -> Response in
            try await instance(request, context) { instance in
                instance.report(try await JSONBodyDecoder(limit: Self.maxReportBytes).decode(InstanceReport.self, from: request, context: context))
                return Response(status: .noContent)
            }
        }
        group.post(":worker/instances/:instance/assignments/:assignment/events") { request, context -> Response in
            try await instance(request, context) { instance in
                let batch = try await JSONBodyDecoder(limit: Self.maxReportBytes).decode(WorkerEventBatch.self, from: request, context: context)
                guard instance.events(try context.parameters.require("assignment"), batch.events) else { throw Self.notHeld }
                return Response(status: .noContent)
            }
        }
        group.put(":worker/instances/:instance/assignments/:assignment/files/:name") { request, context -> Response in
            try await instance(request, context) { instance in
                guard let target = instance.outputFile(try context.parameters.require("assignment"), name: try context.parameters.require("name")) else {
                    throw Self.notHeld
                }
                try await Self.store(request.body, at: target)
                return Response(status: .created)
            }
        }
        group.post(":worker/instances/:instance/assignments/:assignment/complete") { request, context -> Response in
            try await instance(request, context) { instance in
                let completion = try await JSONBodyDecoder(limit: Self.maxReportBytes).decode(WorkerCompletion.self, from: request, context: context)
                guard instance.complete(try context.parameters.require("assignment"), completion.outcome, instanceStopped: completion.instanceStopped == true) else {
                    throw Self.notHeld
                }
                return Response(status: .noContent)
            }
        }
        group.get(":worker/instances/:instance/assignments/:assignment/inputs/:folder/:name") { request, context -> Response in
            try await instance(request, context) { instance in
                let path = try context.parameters.require("folder") + "/" + context.parameters.require("name")
                guard let file = instance.inputFile(try context.parameters.require("assignment"), path: path),
                      let handle = FileHandle(forReadingAtPath: file.path) else {
                    throw RegistryError(404, "no input \(path) for this assignment")
                }
                // Streamed in 1 MiB pieces: inputs may be up to 100 MB.
                return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody { writer in
                    defer { try? handle.close() }
                    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                        try await writer.write(ByteBuffer(data: chunk))
                    }
                    try await writer.finish(nil)
                })
            }
        }
    }

    /// A report about an assignment the server no longer holds: the prediction finished, was
    /// canceled, or ran again elsewhere after this worker was counted lost.
    static let notHeld = RegistryError(409, "this assignment is no longer yours: the prediction ended or runs elsewhere; drop it")

    private func workerToken(_ context: RegistryContext) throws -> WorkerTokenRecord {
        guard let token = context.worker else {
            if context.rejectedCredentials { throw RegistryError(401, "the worker token is not valid (revoked or mistyped)") }
            throw RegistryError(401, "the worker protocol needs a worker token: create one with `lathe admin worker-token create` and pass it in LATHE_WORKER_TOKEN")
        }
        return token
    }

    private func worker(_ context: RegistryContext) async throws -> WorkerFleet.Member {
        let token = try workerToken(context)
        guard let member = try await fleet.touch(try context.parameters.require("worker"), tokenID: token.id) else {
            // Unknown: it was counted lost (or never registered). It registers again.
            throw RegistryError(404, "this worker is not registered (it was counted lost); register again")
        }
        return member
    }

    /// Runs `body` on the instance when this replica placed it; relays the request to the
    /// replica that did otherwise (once: a relayed request is never relayed again); 409 when
    /// no replica holds it.
    private func instance(_ request: Request, _ context: RegistryContext, _ body: (RemoteInstance) async throws -> Response) async throws -> Response {
        let member = try await worker(context)
        let id = try context.parameters.require("instance")
        if let instance = fleet.instance(id, on: member.id) { return try await body(instance) }
        guard request.headers[Self.relayed] == nil, let owner = try await fleet.owner(of: id, on: member.id),
              owner.replica != fleet.replica, !owner.replicaURL.isEmpty else { throw Self.notHeld }
        return try await relay(request, to: owner.replicaURL)
    }

    /// Marks a request one replica relayed to another.
    static let relayed = HTTPFields.Key("Lathe-Relayed")!

    /// Sends the worker's request on to the replica at `base`, with its own credentials (that
    /// replica checks them again), streaming the body both ways.
    private func relay(_ request: Request, to base: String) async throws -> Response {
        var outgoing = HTTPClientRequest(url: base + request.uri.path + (request.uri.query.map { "?" + $0 } ?? ""))
        outgoing.method = .init(rawValue: request.method.rawValue)
        for field in request.headers where [.authorization, .contentType, .contentLength].contains(field.name) {
            outgoing.headers.add(name: field.name.rawName, value: field.value)
        }
        outgoing.headers.add(name: Self.relayed.rawName, value: "1")
        if request.method == .put {
            // An output file (up to 8 GiB) streams through.
            let length = request.headers[.contentLength].flatMap { Int64($0) }.map { HTTPClientRequest.Body.Length.known($0) } ?? .unknown
            outgoing.body = .stream(request.body, length: length)
        } else if request.method == .post {
            // Reports are small: read whole first, so a relay that fails leaves nothing half read.
            outgoing.body = .bytes(try await request.body.collect(upTo: Self.maxReportBytes))
        }
        let answer: HTTPClientResponse
        do {
            // A replica that died is retried by the client's pool until the deadline: reports get
            // a short one (the worker then drops the assignment), an output file's upload its time.
            answer = try await HTTPClient.shared.execute(outgoing, timeout: request.method == .put ? .seconds(600) : .seconds(10))
        } catch {
            // The replica that placed it is down: its predictions are counted lost there and run
            // again; the worker drops this assignment.
            throw Self.notHeld
        }
        var headers = HTTPFields()
        for header in answer.headers where ["content-type", "content-length"].contains(header.name.lowercased()) {
            if let name = HTTPFields.Key(header.name) { headers[name] = header.value }
        }
        return Response(status: .init(code: Int(answer.status.code)), headers: headers, body: ResponseBody(asyncSequence: answer.body))
    }

    private func encoded(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: try JSONEncoder().encode(value))))
    }

    /// Streams an uploaded output file to `target`, within the size limit.
    static func store(_ body: RequestBody, at target: URL) async throws {
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: target.path, contents: nil), let handle = FileHandle(forWritingAtPath: target.path) else {
            throw RegistryError(500, "cannot write the output file")
        }
        defer { try? handle.close() }
        var written: Int64 = 0
        for try await buffer in body {
            written += Int64(buffer.readableBytes)
            guard written <= maxOutputBytes else {
                try? FileManager.default.removeItem(at: target)
                throw RegistryError(413, "the output file is larger than \(maxOutputBytes >> 30) GiB")
            }
            try buffer.withUnsafeReadableBytes { try handle.write(contentsOf: $0) }
        }
    }
}
