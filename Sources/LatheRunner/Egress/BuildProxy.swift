import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The only way out of an environment build's sandbox. Builds run in a network namespace of their
/// own (no route to this machine's loopback, its private networks or a cloud metadata address);
/// the installer reaches the package index through this HTTP proxy, which listens on a Unix
/// socket bound into the sandbox and decides each connection:
///
/// - the package index hosts (PyPI, or the index URLs the operator configured) are the operator's
///   infrastructure and are always reached;
/// - any other host only when every address it resolves to passes the ``EgressPolicy`` (public
///   addresses, or ranges the operator allowed with `--allow-outbound`), checked on the address
///   that is then connected to.
///
/// `CONNECT host:port` (HTTPS) is tunneled; plain-HTTP requests in absolute form are forwarded
/// one per connection. Refusals answer 403 with a sentence and are written to the build's log.
public final class BuildProxy: @unchecked Sendable {
    /// The socket's path (short: Unix socket paths are limited to 108 bytes).
    public let socketPath: String
    private let folder: String
    private let policy: EgressPolicy
    private let indexHosts: Set<String>
    private let log: @Sendable (String) -> Void
    private let listener: Int32
    private let lock = NSLock()
    private var open: Set<Int32> = []
    private var stopped = false

    /// The hosts a build may always reach: PyPI, and the hosts of the index URLs in `environment`.
    public static func indexHosts(environment: [String: String]) -> Set<String> {
        var hosts: Set<String> = ["pypi.org", "files.pythonhosted.org"]
        for key in ["UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"] {
            for url in (environment[key] ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                // UV_INDEX may be NAME=URL.
                let text = url.split(separator: "=", maxSplits: 1).last.map(String.init) ?? String(url)
                if let host = URLComponents(string: text)?.host?.lowercased() { hosts.insert(host) }
            }
        }
        return hosts
    }

    public init(policy: EgressPolicy, indexHosts: Set<String>, log: @escaping @Sendable (String) -> Void) throws {
        var template = Array("/tmp/lathe-egress-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw BuildProxyError("cannot make a folder for the build's proxy socket") }
        folder = String(cString: made)
        socketPath = folder + "/proxy.sock"
        self.policy = policy
        self.indexHosts = indexHosts
        self.log = log
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw BuildProxyError("cannot make the build's proxy socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() where index < raw.count - 1 { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // The sandbox's user (nobody, in a user namespace) must reach and connect to the socket.
        guard bound == 0, chmod(socketPath, 0o666) == 0, chmod(folder, 0o711) == 0, listen(listener, 128) == 0 else {
            close(listener)
            try? FileManager.default.removeItem(atPath: folder)
            throw BuildProxyError("cannot listen on \(socketPath)")
        }
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting, ends every open connection, and removes the socket.
    public func stop() {
        lock.withLock {
            stopped = true
            shutdown(listener, Int32(SHUT_RDWR))
            for descriptor in open { shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // (accept4 is not visible to Swift here)
            guard track(client) else { close(client); break }
            Thread.detachNewThread { [self] in
                handle(client)
                untrack(client)
                close(client)
            }
        }
        close(listener)
    }

    private func track(_ descriptor: Int32) -> Bool {
        lock.withLock {
            if stopped { return false }
            open.insert(descriptor)
            return true
        }
    }

    private func untrack(_ descriptor: Int32) {
        _ = lock.withLock { open.remove(descriptor) }
    }

    // MARK: One connection

    private func handle(_ client: Int32) {
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let (head, rest) = Self.readHead(client) else {
            return answer(client, 400, "the request to the build's proxy was not HTTP")
        }
        guard let request = ProxyRequest(head: head) else {
            return answer(client, 400, "the build's proxy takes CONNECT host:port or an absolute http:// URL")
        }
        let upstream: Int32
        switch connect(to: request.host, port: request.port) {
        case .refused(let reason):
            log("egress: refused \(request.host):\(request.port) — \(reason)\n")
            return answer(client, 403, "Lathe's egress policy refuses \(request.host):\(request.port): \(reason). Environment builds reach the package index and public hosts only; an operator can widen this with --allow-outbound CIDR.")
        case .failed(let reason):
            return answer(client, 502, "cannot reach \(request.host):\(request.port): \(reason)")
        case .connected(let descriptor):
            upstream = descriptor
        }
        guard track(upstream) else { close(upstream); return }
        defer { untrack(upstream); close(upstream) }
        timeout = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if request.isConnect {
            guard Self.writeAll(client, Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8)) else { return }
            guard Self.writeAll(upstream, rest) else { return }
        } else {
            guard Self.writeAll(upstream, request.forwardedHead + rest) else { return }
        }
        Self.splice(client, upstream)
    }

    private enum Outcome { case connected(Int32), refused(String), failed(String) }

    private func connect(to host: String, port: Int) -> Outcome {
        let addresses = EgressPolicy.resolve(host)
        guard !addresses.isEmpty else { return .failed("the name does not resolve") }
        if !indexHosts.contains(host.lowercased()) {
            // Every address must pass: a name that also resolves to loopback is refused outright.
            for address in addresses {
                if let reason = policy.refusal(address) { return .refused("it resolves to \(address), and \(reason)") }
            }
        }
        var last = "no address answered"
        for address in addresses {
            let descriptor = socket(address.isV4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard descriptor >= 0 else { continue }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if Self.connect(descriptor, address, port) { return .connected(descriptor) }
            last = String(cString: strerror(errno))
            close(descriptor)
        }
        return .failed(last)
    }

    private static func connect(_ descriptor: Int32, _ address: IPAddress, _ port: Int) -> Bool {
        func attempt<Address>(_ socketAddress: inout Address) -> Bool {
            withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<Address>.size)) }
            } == 0
        }
        if address.isV4 {
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &socketAddress.sin_addr) { $0.copyBytes(from: address.bytes) }
            return attempt(&socketAddress)
        }
        var socketAddress = sockaddr_in6()
        socketAddress.sin6_family = sa_family_t(AF_INET6)
        socketAddress.sin6_port = in_port_t(UInt16(port).bigEndian)
        withUnsafeMutableBytes(of: &socketAddress.sin6_addr) { $0.copyBytes(from: address.bytes) }
        return attempt(&socketAddress)
    }

    private func answer(_ client: Int32, _ status: Int, _ sentence: String) {
        let reason = [400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"][status] ?? "Error"
        let body = Array((sentence + "\n").utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        _ = Self.writeAll(client, Array(head.utf8) + body)
    }

    /// The request head (up to the blank line, at most 16 KiB) and whatever followed it.
    private static func readHead(_ descriptor: Int32) -> (head: [UInt8], rest: [UInt8])? {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = [13, 10, 13, 10]
        while buffer.count < 16 << 10 {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { return nil }
            buffer += chunk[..<count]
            if let range = buffer.firstRange(of: end) {
                return (Array(buffer[..<range.upperBound]), Array(buffer[range.upperBound...]))
            }
        }
        return nil
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    /// Copies bytes both ways until both sides have finished sending.
    private static func splice(_ first: Int32, _ second: Int32) {
        var fds = [pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        var open = [true, true]
        while open[0] || open[1] {
            for index in 0..<2 { fds[index].fd = open[index] ? (index == 0 ? first : second) : -1 }
            let ready = poll(&fds, 2, -1)
            if ready < 0 { if errno == EINTR { continue }; return }
            for index in 0..<2 where open[index] && fds[index].revents != 0 {
                let from = index == 0 ? first : second
                let to = index == 0 ? second : first
                let count = chunk.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
                if count <= 0 {
                    open[index] = false
                    shutdown(to, Int32(SHUT_WR))
                    if count < 0 { return }
                } else if !writeAll(to, Array(chunk[..<count])) {
                    return
                }
            }
        }
    }
}

/// A request to the build's proxy: where it goes and, for plain HTTP, the head to forward.
struct ProxyRequest {
    var isConnect: Bool
    var host: String
    var port: Int
    /// The plain-HTTP head with hop-by-hop headers dropped and `Connection: close` (one request
    /// per connection, so a client cannot reuse the tunnel for another host).
    var forwardedHead: [UInt8] = []

    init?(head: [UInt8]) {
        guard let text = String(validating: head, as: UTF8.self) else { return nil }
        var lines = text.components(separatedBy: "\r\n")
        let parts = lines.removeFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return nil }
        if parts[0] == "CONNECT" {
            guard let (host, port) = Self.authority(String(parts[1])) else { return nil }
            (isConnect, self.host, self.port) = (true, host, port)
            return
        }
        guard parts[1].lowercased().hasPrefix("http://"), let url = URLComponents(string: String(parts[1])), let host = url.host, !host.isEmpty,
              (1...65_535).contains(url.port ?? 80) else { return nil }
        (isConnect, self.host, self.port) = (false, host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), url.port ?? 80)
        let dropped: Set<String> = ["connection", "proxy-connection", "keep-alive", "proxy-authorization"]
        let kept = lines.filter { line in
            guard let colon = line.firstIndex(of: ":") else { return false }
            return !dropped.contains(line[..<colon].trimmingCharacters(in: .whitespaces).lowercased())
        }
        // Origin form on the way out: not every server accepts the absolute form a proxy gets.
        let path = (url.percentEncodedPath.isEmpty ? "/" : url.percentEncodedPath) + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
        let line = "\(parts[0]) \(path) \(parts[2])"
        forwardedHead = Array(([line] + kept + ["Connection: close", "", ""]).joined(separator: "\r\n").utf8)
    }

    /// `host:port` or `[v6]:port`, with a port from 1 to 65535.
    static func authority(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, host.count <= 253, !host.contains(where: { $0.isWhitespace || $0 == "/" }) else { return nil }
        return (host, port)
    }
}

struct BuildProxyError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
