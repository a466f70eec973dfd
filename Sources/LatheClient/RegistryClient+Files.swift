import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

extension RegistryClient {
    /// Sends a file as a request body, streamed in 1 MiB pieces (never whole in memory).
    public func upload(_ method: HTTPMethod, _ path: String, file: URL, expect: Set<Int>) async throws {
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.int64Value ?? 0
        let chunks = FileChunks(path: file.path, range: 0..<size, progress: { _ in })
        try await send(method, path, headers: [("Content-Type", "application/octet-stream")],
                       body: .stream(chunks, length: .known(size)), expect: expect)
    }

    /// Streams a GET's body to `file`; at most `limit` bytes.
    public func download(_ path: String, to file: URL, limit: Int64) async throws {
        var request = HTTPClientRequest(url: url(path))
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await http.execute(request, timeout: .seconds(600))
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 1 << 20)
            throw Failure(method: "GET", url: request.url, status: Int(response.status.code),
                          message: Self.message(Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: body))))
        }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: file.path, contents: nil), let handle = FileHandle(forWritingAtPath: file.path) else {
            throw Failure(method: "GET", url: request.url, status: 200, message: "cannot write \(file.path)")
        }
        defer { try? handle.close() }
        var written: Int64 = 0
        for try await buffer in response.body {
            written += Int64(buffer.readableBytes)
            guard written <= limit else {
                throw Failure(method: "GET", url: request.url, status: 200, message: "the body is larger than \(limit) bytes")
            }
            try buffer.withUnsafeReadableBytes { try handle.write(contentsOf: $0) }
        }
    }
}
