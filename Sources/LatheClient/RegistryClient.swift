import AsyncHTTPClient
import Foundation
import LatheArchive
import LatheSpec
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// An HTTP client for a Lathe registry (or any OCI registry, for `/v2`).
public final class RegistryClient: Sendable {
    public let base: String
    let token: String?
    let http: HTTPClient

    /// A failed request: what was asked, the status and the server's own words.
    public struct Failure: Error, CustomStringConvertible {
        public var method: String
        public var url: String
        public var status: Int
        public var message: String
        public var description: String { "\(method) \(url) answered \(status): \(message)" }
    }

    public init(base: String, token: String?) {
        self.base = Credentials.normalize(base)
        self.token = token
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(300))
        configuration.redirectConfiguration = .disallow
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    /// A response with its body collected (small bodies only: JSON, manifests, errors).
    public struct Reply: Sendable {
        public var status: Int
        public var headers: HTTPHeaders
        public var body: Data

        public func header(_ name: String) -> String? { headers.first(name: name) }
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    func url(_ pathOrURL: String) -> String {
        pathOrURL.hasPrefix("http://") || pathOrURL.hasPrefix("https://") ? pathOrURL : base + pathOrURL
    }

    /// Sends a request with the token (Bearer) and returns the collected reply.
    @discardableResult
    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: HTTPClientRequest.Body? = nil,
                     expect: Set<Int>? = nil, limit: Int = 16 << 20, timeout: TimeInterval = 600) async throws -> Reply {
        var request = HTTPClientRequest(url: url(path))
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = body }
        let response = try await http.execute(request, timeout: .milliseconds(Int64(max(0.001, timeout) * 1000)))
        let collected = try await response.body.collect(upTo: limit)
        let reply = Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: collected))
        if let expect, !expect.contains(reply.status) {
            throw Failure(method: method.rawValue, url: url(path), status: reply.status, message: Self.message(reply))
        }
        return reply
    }

    /// The most useful words in an error body (OCI errors, problem JSON, or the text).
    static func message(_ reply: Reply) -> String {
        if let object = try? JSONDecoder().decode(JSONValue.self, from: reply.body) {
            if let first = object["errors"]?.arrayValue?.first {
                return [first["code"]?.stringValue, first["message"]?.stringValue].compactMap { $0 }.joined(separator: ": ")
            }
            if let detail = object["detail"]?.stringValue { return detail }
        }
        return reply.text.isEmpty ? "(no body)" : String(reply.text.prefix(500))
    }

    // MARK: - /v1

    /// The signed-in account's username (checks the token).
    public func username() async throws -> String {
        let reply = try await send(.GET, "/v1/account", expect: [200])
        guard let name = try JSONDecoder().decode(JSONValue.self, from: reply.body)["username"]?.stringValue else {
            throw Failure(method: "GET", url: url("/v1/account"), status: reply.status, message: "no username in the answer")
        }
        return name
    }

    /// Creates a model; an existing model is not an error (false is returned).
    public func createModel(owner: String, name: String, visibility: String) async throws -> Bool {
        let body = try JSON.canonical(["owner": owner, "name": name, "visibility": visibility, "hardware": "cpu"])
        let reply = try await send(.POST, "/v1/models", headers: [("Content-Type", "application/json")], body: .bytes(ByteBuffer(data: body)),
                                   expect: [201, 409])
        return reply.status == 201
    }

    /// Offers the project's README.md as the model's readme on a push: the registry takes it
    /// unless the readme was edited on the web or through the API since (`PUT …/readme`).
    /// Returns what happened: `adopted`, `updated`, `unchanged` or `kept`.
    public func pushReadme(_ text: String, model: String) async throws -> String {
        struct Reply: Decodable { var readme: String }
        let body = try JSON.canonical(["readme": text])
        let reply = try await send(.PUT, "/v1/models/\(model)/readme", headers: [("Content-Type", "application/json")],
                                   body: .bytes(ByteBuffer(data: body)), expect: [200])
        return try JSONDecoder().decode(Reply.self, from: reply.body).readme
    }
}
