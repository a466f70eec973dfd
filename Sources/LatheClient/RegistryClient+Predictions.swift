import AsyncHTTPClient
import Foundation
import LatheSpec
import NIOCore
import NIOFoundationCompat

extension RegistryClient {
    /// The JSON of `GET path`, decoded.
    public func getJSON(_ path: String) async throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: try await send(.GET, path, expect: [200]).body)
    }

    /// Creates a prediction; with `wait`, the registry holds the answer up to 60 s.
    public func createPrediction(model: String, version: String?, input: [String: JSONValue], wait: Bool) async throws -> JSONValue {
        var body: [String: JSONValue] = ["input": .object(input)]
        let path: String
        if let version {
            body["version"] = .string(version)
            path = "/v1/predictions"
        } else {
            path = "/v1/models/\(model)/predictions"
        }
        var headers = [("Content-Type", "application/json")]
        if wait { headers.append(("Prefer", "wait")) }
        let reply = try await send(.POST, path, headers: headers, body: .bytes(ByteBuffer(data: try JSON.canonical(JSONValue.object(body)))))
        guard reply.status == 201 else {
            throw Failure(method: "POST", url: url(path), status: reply.status, message: Self.message(reply))
        }
        return try JSONDecoder().decode(JSONValue.self, from: reply.body)
    }

    /// Uploads a local file through `/v1/files` (multipart, streamed) and returns its `urls.get`.
    public func uploadFile(_ file: URL) async throws -> String {
        let boundary = "lathe-\(UUID().uuidString)"
        let name = file.lastPathComponent.replacingOccurrences(of: "\"", with: "")
        let head = "--\(boundary)\r\nContent-Disposition: form-data; name=\"content\"; filename=\"\(name)\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        let tail = "\r\n--\(boundary)--\r\n"
        let size = Int64((try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0)
        let parts = MultipartBody(head: ByteBuffer(string: head), file: FileChunks(path: file.path, range: 0..<size, progress: { _ in }),
                                  tail: ByteBuffer(string: tail))
        let reply = try await send(.POST, "/v1/files", headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")],
                                   body: .stream(parts, length: .known(Int64(head.utf8.count + tail.utf8.count) + size)), expect: [201])
        guard let get = try JSONDecoder().decode(JSONValue.self, from: reply.body)["urls"]?["get"]?.stringValue else {
            throw Failure(method: "POST", url: url("/v1/files"), status: 201, message: "no urls.get in the answer")
        }
        return get
    }

    /// Reads a server-sent event stream, calling `onEvent(event, data)` until `done`.
    public func stream(_ streamURL: String, onEvent: (String, String) -> Void) async throws {
        var request = HTTPClientRequest(url: url(streamURL))
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await http.execute(request, timeout: .seconds(3600))
        var pending = ""
        var event = "", data: [String] = []
        for try await buffer in response.body {
            pending += String(buffer: buffer)
            while let newline = pending.firstIndex(of: "\n") {
                let line = String(pending[..<newline])
                pending = String(pending[pending.index(after: newline)...])
                if line.isEmpty {
                    if !event.isEmpty { onEvent(event, data.joined(separator: "\n")) }
                    if event == "done" { return }
                    event = ""; data = []
                } else if line.hasPrefix("event:") {
                    event = line.dropFirst(6).trimmingCharacters(in: .whitespaces)
                } else if line.hasPrefix("data:") {
                    // SSE drops exactly one space after the colon; the rest is data.
                    let value = line.dropFirst(5)
                    data.append(String(value.hasPrefix(" ") ? value.dropFirst() : value))
                }
            }
        }
    }

    /// Saves a file output (an http(s) URL or a data URI) as `target`.
    public func download(_ reference: String, to target: URL) async throws {
        if reference.hasPrefix("data:") {
            guard let comma = reference.firstIndex(of: ","), let data = Data(base64Encoded: String(reference[reference.index(after: comma)...])) else {
                throw Failure(method: "GET", url: "data:", status: 0, message: "not a base64 data URI")
            }
            try data.write(to: target)
            return
        }
        let reply = try await send(.GET, reference, expect: [200], limit: 1 << 30)
        try reply.body.write(to: target)
    }
}

/// A multipart body: preamble, the file in 1 MiB pieces, closing boundary.
struct MultipartBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let head: ByteBuffer
    let file: FileChunks
    let tail: ByteBuffer

    struct AsyncIterator: AsyncIteratorProtocol {
        var stage = 0
        var head: ByteBuffer
        var file: FileChunks.AsyncIterator
        var tail: ByteBuffer

        mutating func next() async throws -> ByteBuffer? {
            switch stage {
            case 0:
                stage = 1
                return head
            case 1:
                if let chunk = try await file.next() { return chunk }
                stage = 2
                return tail
            default:
                return nil
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(head: head, file: file.makeAsyncIterator(), tail: tail)
    }
}
