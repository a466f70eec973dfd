import AsyncHTTPClient
import Foundation
import LatheSpec
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// A refused or failed outbound request, told as one sentence a user can act on (never a socket
/// error, and never in a way that tells an open local port from a closed one).
public struct OutboundError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// HTTP requests Lathe makes on a user's behalf, all through one ``EgressPolicy``: each hop's
/// host is resolved here, every candidate address checked, and the connection pinned to a checked
/// address (so a DNS answer cannot change between the check and the connect); redirects are
/// followed by hand, at most `maxRedirects`, each one checked again; bodies are size-limited
/// while they stream; the whole exchange is bounded by a deadline and by task cancellation.
public struct OutboundHTTP: Sendable {
    public var policy: EgressPolicy
    public var maxRedirects = 3

    public init(policy: EgressPolicy) {
        self.policy = policy
    }

    /// Downloads `url` into `file` (created; removed again on any failure).
    public func download(_ url: URL, to file: URL, maxBytes: Int64, timeout: TimeInterval) async throws {
        do {
            try await withDeadline(timeout, what: "downloading \(Self.display(url))") {
                var current = url
                for _ in 0...maxRedirects {
                    let (client, request) = try await prepare(current, method: .GET)
                    do {
                        let response = try await client.execute(request, timeout: .seconds(Int64(max(1, timeout))))
                        if let next = redirect(response, from: current) {
                            try await client.shutdown()
                            current = next
                            continue
                        }
                        guard response.status.code == 200 else {
                            try await client.shutdown()
                            throw OutboundError("downloading \(Self.display(url)) failed: the server answered HTTP \(response.status.code); give a URL that serves the file")
                        }
                        if let declared = response.headers.first(name: "content-length").flatMap(Int64.init), declared > maxBytes {
                            try await client.shutdown()
                            throw OutboundError("\(Self.display(url)) is larger than \(maxBytes >> 20) MB, the most an input file may be")
                        }
                        _ = FileManager.default.createFile(atPath: file.path, contents: nil)
                        let handle = try FileHandle(forWritingTo: file)
                        defer { try? handle.close() }
                        var received: Int64 = 0
                        for try await chunk in response.body {
                            received += Int64(chunk.readableBytes)
                            guard received <= maxBytes else {
                                throw OutboundError("\(Self.display(url)) is larger than \(maxBytes >> 20) MB, the most an input file may be")
                            }
                            try handle.write(contentsOf: Data(buffer: chunk))
                        }
                        try await client.shutdown()
                        return
                    } catch {
                        try? await client.shutdown()
                        throw error
                    }
                }
                throw OutboundError("\(Self.display(url)) redirects more than \(maxRedirects) times; give the file's final URL")
            }
        } catch {
            try? FileManager.default.removeItem(at: file)
            throw Self.userFacing(error, url: url)
        }
    }

    /// POSTs `body` and returns the answer's status. Redirects are not followed (a webhook
    /// receiver answers itself).
    public func post(_ url: URL, body: Data, headers: [(String, String)], timeout: TimeInterval) async throws -> Int {
        do {
            return try await withDeadline(timeout, what: "posting to \(Self.display(url))") {
                var (client, request) = try await prepare(url, method: .POST)
                for (name, value) in headers { request.headers.add(name: name, value: value) }
                request.body = .bytes(ByteBuffer(data: body))
                do {
                    let response = try await client.execute(request, timeout: .seconds(Int64(max(1, timeout))))
                    // Read (and drop) at most 64 KiB of the answer.
                    _ = try? await response.body.collect(upTo: 64 << 10)
                    try await client.shutdown()
                    return Int(response.status.code)
                } catch {
                    try? await client.shutdown()
                    throw error
                }
            }
        } catch {
            throw Self.userFacing(error, url: url)
        }
    }

    /// A checked URL: http(s), a host, the host's addresses resolved and one that the policy
    /// allows chosen and pinned. Returns a one-off client whose connections go only there.
    private func prepare(_ url: URL, method: HTTPMethod) async throws -> (HTTPClient, HTTPClientRequest) {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw OutboundError("\(Self.display(url)) is not an http(s) URL")
        }
        guard let host = url.host, !host.isEmpty else { throw OutboundError("\(Self.display(url)) has no host name") }
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        let addresses = await Self.resolving(bare)
        guard !addresses.isEmpty else { throw OutboundError("the host \(bare) of \(Self.display(url)) does not resolve") }
        var refusals: [String] = []
        var chosen: IPAddress?
        for address in addresses {
            if let reason = policy.refusal(address) { refusals.append("\(address): \(reason)") } else { chosen = address; break }
        }
        guard let chosen else {
            throw OutboundError("\(Self.display(url)) points at an address this server does not connect to (\(refusals.first ?? "")); use a public URL")
        }
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(10), read: .seconds(30)),
                                                     decompression: .disabled)
        configuration.dnsOverride[host] = chosen.description
        configuration.dnsOverride[bare] = chosen.description
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        request.headers.add(name: "User-Agent", value: "lathe")
        return (client, request)
    }

    private func redirect(_ response: HTTPClientResponse, from url: URL) -> URL? {
        guard [301, 302, 303, 307, 308].contains(response.status.code), let location = response.headers.first(name: "location"),
              let next = URL(string: location, relativeTo: url)?.absoluteURL else { return nil }
        return next
    }

    private static func resolving(_ host: String) async -> [IPAddress] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: EgressPolicy.resolve(host)) }
        }
    }

    /// Runs `body`, failing with a sentence when `seconds` pass first (the body is cancelled).
    private func withDeadline<T: Sendable>(_ seconds: TimeInterval, what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                if seconds.isFinite, seconds > 0 { try await Task.sleep(nanoseconds: UInt64(min(seconds, 86_400) * 1_000_000_000)) }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw OutboundError("\(what) took longer than \(seconds.exactInteger.map(String.init) ?? String(seconds)) s")
            }
            return value
        }
    }

    /// The URL as shown in messages: without credentials or query (which may hold secrets), cut short.
    static func display(_ url: URL) -> String {
        var components = URLComponents(url: url, resolvingAgainstBaseURL: true)
        components?.user = nil
        components?.password = nil
        components?.query = nil
        return String((components?.string ?? url.absoluteString).prefix(200))
    }

    private static func userFacing(_ error: any Error, url: URL) -> any Error {
        if error is OutboundError || error is CancellationError { return error }
        // Connection refused, reset, TLS and timeouts all read the same: no port probing.
        return OutboundError("could not fetch \(display(url)): the host did not answer over HTTP(S); check the URL")
    }
}
