import Foundation
import Testing
@testable import LatheRunner

@Suite("the environment build's proxy")
struct BuildProxyTests {
    @Test("requests parse into a checked host and port, or nothing")
    func parsing() throws {
        func head(_ text: String) -> [UInt8] { Array(text.utf8) }
        let connect = try #require(ProxyRequest(head: head("CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")))
        #expect(connect.isConnect && connect.host == "pypi.org" && connect.port == 443)
        let v6 = try #require(ProxyRequest(head: head("CONNECT [::1]:8080 HTTP/1.1\r\n\r\n")))
        #expect(v6.host == "::1" && v6.port == 8080)
        let plain = try #require(ProxyRequest(head: head(
            "GET http://files.example:8080/a%20b?x=1 HTTP/1.1\r\nHost: files.example:8080\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n")))
        #expect(!plain.isConnect && plain.host == "files.example" && plain.port == 8080)
        #expect(String(decoding: plain.forwardedHead, as: UTF8.self)
            == "GET /a%20b?x=1 HTTP/1.1\r\nHost: files.example:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        for hostile in ["CONNECT pypi.org:0 HTTP/1.1", "CONNECT pypi.org:65536 HTTP/1.1", "CONNECT pypi.org:99999999999999999999 HTTP/1.1",
                        "CONNECT pypi.org HTTP/1.1", "CONNECT :443 HTTP/1.1", "CONNECT a b:443 HTTP/1.1", "GET /relative HTTP/1.1",
                        "GET https://pypi.org/ HTTP/1.1", "GET http:///nohost HTTP/1.1", "GET http://x:0/ HTTP/1.1", "CONNECT pypi.org:443",
                        "CONNECT pypi.org:443 SMTP/1.0", "", "\u{0}\u{0}"] {
            #expect(ProxyRequest(head: head(hostile + "\r\n\r\n")) == nil, "\(hostile)")
        }
        #expect(ProxyRequest(head: [0xff, 0xfe, 0x20, 0x0d, 0x0a, 0x0d, 0x0a]) == nil)
    }

    @Test("loopback is refused with a sentence and logged; an allowed host is tunneled")
    func decisions() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let logged = LogLines()
        let strict = try BuildProxy(policy: EgressPolicy(), indexHosts: ["pypi.org"], log: { logged.append($0) })
        defer { strict.stop() }
        let refused = try exchange(strict.socketPath, "CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\n")
        #expect(refused.hasPrefix("HTTP/1.1 403 Forbidden"))
        #expect(refused.contains("egress policy refuses 127.0.0.1:\(echo.port)") && refused.contains("--allow-outbound"))
        #expect(logged.text.contains("egress: refused 127.0.0.1:\(echo.port)"))
        let metadata = try exchange(strict.socketPath, "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        #expect(metadata.hasPrefix("HTTP/1.1 403"))
        #expect(try exchange(strict.socketPath, "GARBAGE\r\n\r\n").hasPrefix("HTTP/1.1 400"))

        let widened = try BuildProxy(policy: EgressPolicy(allowed: [IPNetwork("127.0.0.0/8")!]), indexHosts: [], log: { _ in })
        defer { widened.stop() }
        let tunneled = try exchange(widened.socketPath, "CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\nping")
        #expect(tunneled == "HTTP/1.1 200 Connection established\r\n\r\nping")
    }

    /// Sends `request` to the proxy's socket, closes the sending side, and reads everything back.
    func exchange(_ path: String, _ request: String) throws -> String {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(connected == 0)
        _ = Array(request.utf8).withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
        shutdown(descriptor, Int32(SHUT_WR))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            received += chunk[..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines = ""
    func append(_ text: String) { lock.withLock { lines += text } }
    var text: String { lock.withLock { lines } }
}

/// A TCP server on 127.0.0.1 that sends back what it receives, then closes.
final class EchoServer: @unchecked Sendable {
    let descriptor: Int32
    let port: Int

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, size) } }
        listen(listener, 8)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &size) } }
        descriptor = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [descriptor] in
            while true {
                let client = accept(descriptor, nil, nil)
                if client < 0 { return }
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                    if count <= 0 { break }
                    _ = chunk.withUnsafeBytes { send(client, $0.baseAddress, count, 0) }
                }
                close(client)
            }
        }
    }

    func stop() { shutdown(descriptor, Int32(SHUT_RDWR)); close(descriptor) }
}
