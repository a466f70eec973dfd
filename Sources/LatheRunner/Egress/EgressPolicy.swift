import Foundation

/// The one rule for every connection Lathe opens on a user's behalf (URL inputs, webhooks):
/// public unicast addresses only. Loopback, private, shared, link-local, unique-local,
/// multicast, reserved and documentation ranges, and the machine's own addresses, are refused,
/// unless the operator widens the policy with `--allow-outbound CIDR` (which wins over all of
/// these). The check is made on the resolved address that is then connected to, at every hop.
public struct EgressPolicy: Sendable {
    /// Ranges the operator allows even though they are refused by default.
    public var allowed: [IPNetwork]
    /// The machine's own addresses (from its interfaces), refused unless allowed.
    public var ownAddresses: Set<IPAddress>

    public init(allowed: [IPNetwork] = [], ownAddresses: Set<IPAddress> = EgressPolicy.interfaceAddresses()) {
        self.allowed = allowed
        self.ownAddresses = ownAddresses
    }

    /// No restriction at all: for `lathe predict` on an author's own machine, where the author
    /// types the URLs.
    public static let unrestricted = EgressPolicy(allowed: [IPNetwork("0.0.0.0/0")!, IPNetwork("::/0")!], ownAddresses: [])

    /// Refused by default (RFC 6890 special-purpose registries, plus multicast).
    static let refused: [IPNetwork] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
        "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
        "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    ].map { IPNetwork($0)! }

    /// Why `address` may not be connected to, or nil when it may.
    public func refusal(_ address: IPAddress) -> String? {
        if allowed.contains(where: { $0.contains(address) }) { return nil }
        if let inner = address.embeddedV4 { return refusal(inner) }
        // Each reason says why it is refused by default and which flag allows it.
        if ownAddresses.contains(address) {
            return "it is this server's own address, refused by default so that no user reaches services on the server's machine; an operator allows it with `lathe serve --allow-outbound \(address)/\(address.isV4 ? 32 : 128)`"
        }
        if let range = Self.refused.first(where: { $0.contains(address) }) {
            return "\(range) is a loopback, private, link-local or otherwise non-public range, refused by default so that no user reaches the server's own network; an operator allows it with `lathe serve --allow-outbound \(range)`"
        }
        return nil
    }

    /// The addresses of this machine's interfaces.
    public static func interfaceAddresses() -> Set<IPAddress> {
        var result = Set<IPAddress>()
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return result }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            if let address = entry.pointee.ifa_addr.flatMap(IPAddress.init(socketAddress:)) { result.insert(address) }
        }
        return result
    }

    /// Every address `host` resolves to (an IP literal resolves to itself). Blocking: call it
    /// off the cooperative pool.
    public static func resolve(_ host: String) -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &results) == 0 else { return [] }
        defer { freeaddrinfo(results) }
        var addresses: [IPAddress] = []
        var cursor = results
        while let entry = cursor {
            defer { cursor = entry.pointee.ai_next }
            if let address = entry.pointee.ai_addr.flatMap(IPAddress.init(socketAddress:)) { addresses.append(address) }
        }
        return addresses
    }
}
