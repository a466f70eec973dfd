import AsyncHTTPClient
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import NIOCore
import NIOHTTP1

/// The few S3 calls the blob store makes, path-style (`ENDPOINT/BUCKET/KEY`, what SeaweedFS,
/// MinIO and other non-AWS endpoints expect), signed with ``SigV4``, over async-http-client.
/// Every failure is a ``StoreError``: unavailable when the storage is unreachable or failing (the
/// client retries), failed when it refused the request (credentials, permissions).
struct S3Client: Sendable {
    package let endpoint: URL
    package let bucket: String
    package let signer: SigV4
    package let http: HTTPClient

    /// A bucket-relative key as a URL (each segment percent-encoded; `/` separates them).
    package func url(_ key: String?, query: [(String, String)] = []) -> URL {
        var text = endpoint.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + "/" + SigV4.encode(bucket)
        if let key { text += "/" + SigV4.encode(key, keepSlash: true) }
        if !query.isEmpty { text += "?" + query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&") }
        return URL(string: text)!
    }

    /// Sends a signed request; the response's body is the caller's to read.
    package func send(_ method: HTTPMethod, _ key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
              body: HTTPClientRequest.Body? = nil, payloadHash: String = SigV4.emptyPayload,
              timeout: TimeAmount = .seconds(600)) async throws -> HTTPClientResponse {
        let target = url(key, query: query)
        var request = HTTPClientRequest(url: target.absoluteString)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in signer.sign(method: method.rawValue, url: target, headers: headers, payloadHash: payloadHash) {
            request.headers.add(name: name, value: value)
        }
        request.body = body
        do {
            return try await http.execute(request, timeout: timeout)
        } catch {
            throw StoreError(.unavailable, "the blob store at \(SigV4.host(endpoint)) cannot be reached (\(error)); try again when it is back",
                                code: "UNAVAILABLE")
        }
    }

    /// Sends and checks the status: `accept` statuses return the response, anything else throws
    /// with S3's own code and message.
    package func call(_ method: HTTPMethod, _ key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
              body: HTTPClientRequest.Body? = nil, payloadHash: String = SigV4.emptyPayload, accept: Set<UInt> = [200, 204, 206])
        async throws -> HTTPClientResponse {
        let response = try await send(method, key, query: query, headers: headers, body: body, payloadHash: payloadHash)
        guard accept.contains(response.status.code) else { throw try await failure(response, method: method, key: key) }
        return response
    }

    /// Sends and collects a small answer (XML listings, results).
    package func collect(_ method: HTTPMethod, _ key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
                 body: HTTPClientRequest.Body? = nil, payloadHash: String = SigV4.emptyPayload) async throws -> Data {
        let response = try await call(method, key, query: query, headers: headers, body: body, payloadHash: payloadHash)
        let buffer = try await response.body.collect(upTo: 16 << 20)
        return Data(buffer: buffer)
    }

    package func failure(_ response: HTTPClientResponse, method: HTTPMethod, key: String?) async throws -> StoreError {
        let text = (try? await response.body.collect(upTo: 64 << 10)).map { Data(buffer: $0) } ?? Data()
        let code = S3XML.value("Code", in: text) ?? "HTTP \(response.status.code)"
        let message = S3XML.value("Message", in: text) ?? response.status.reasonPhrase
        let what = "\(method.rawValue) \(bucket)/\(key ?? "")"
        if response.status.code >= 500 {
            return StoreError(.unavailable, "the blob store at \(SigV4.host(endpoint)) failed on \(what): \(code) \(message); try again", code: "UNAVAILABLE")
        }
        return StoreError(.failed, "the blob store at \(SigV4.host(endpoint)) refused \(what): \(code) \(message)", code: "BLOB_UNKNOWN")
    }
}

/// Reads the few elements S3's XML answers carry (listings, upload ids, errors).
enum S3XML {
    /// The text of the first element called `name`.
    static func value(_ name: String, in data: Data) -> String? { records(name, in: data, fields: []).first?["."] }

    /// For every element called `record`, the text of its children named in `fields` (and of
    /// the element itself under ".").
    static func records(_ record: String, in data: Data, fields: Set<String>) -> [[String: String]] {
        let collector = Collector(record: record, fields: fields)
        let parser = XMLParser(data: data)
        parser.delegate = collector
        _ = parser.parse()  // a malformed answer leaves `found` empty, which callers report
        return collector.found
    }

    private final class Collector: NSObject, XMLParserDelegate {
        let record: String
        let fields: Set<String>
        var found: [[String: String]] = []
        var current: [String: String]?
        var text = ""

        init(record: String, fields: Set<String>) {
            self.record = record
            self.fields = fields
        }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if name == record { current = [:] }
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == record, var item = current {
                if item.isEmpty { item["."] = text }
                found.append(item)
                current = nil
            } else if fields.contains(name) {
                current?[name] = text
            }
            text = ""
        }
    }
}

/// A local file's bytes (or a range of them) as a request body, read 1 MiB at a time.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String
    let offset: Int64
    let length: Int64

    /// Owns the descriptor: closed when the body has been read or dropped.
    final class Descriptor: @unchecked Sendable {
        let fd: Int32
        init(_ path: String) { fd = open(path, O_RDONLY | O_CLOEXEC) }
        deinit { if fd >= 0 { close(fd) } }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let file: Descriptor
        var position: Int64
        let end: Int64

        mutating func next() async throws -> ByteBuffer? {
            guard position < end else { return nil }
            let wanted = Int(Swift.min(1 << 20, end - position))
            var buffer = ByteBufferAllocator().buffer(capacity: wanted)
            let start = position, fd = file.fd
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: wanted) { bytes in
                Swift.max(0, pread(fd, bytes.baseAddress, wanted, off_t(start)))
            }
            guard count > 0 else { throw StoreError(.failed, "a file being uploaded to the blob store got shorter") }
            position += Int64(count)
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(file: Descriptor(path), position: offset, end: offset + length)
    }

    var body: HTTPClientRequest.Body { .stream(self, length: .known(Int64(length))) }
}
