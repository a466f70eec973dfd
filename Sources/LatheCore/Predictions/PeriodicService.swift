import Foundation
import ServiceLifecycle

/// Background work that runs every `interval` seconds as a service of the server's group, on
/// every replica or, with `leader`, only while this replica is the leader (the singletons: one
/// replica at a time does them). Graceful shutdown ends the wait between runs at once.
package struct PeriodicService: Service, CustomStringConvertible {
    package let description: String
    package let interval: TimeInterval
    package let leader: (@Sendable () -> Bool)?
    package let work: @Sendable () async -> Void

    package init(_ name: String, every interval: TimeInterval, leader: (@Sendable () -> Bool)? = nil, _ work: @escaping @Sendable () async -> Void) {
        description = name
        self.interval = interval
        self.leader = leader
        self.work = work
    }

    package func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(nanoseconds: UInt64(interval * 1_000_000_000))
                if leader?() ?? true { await work() }
            }
        }
    }
}

/// Waits for graceful shutdown, then runs `drain` (the scheduler stops its instances).
package struct DrainOnShutdown: Service, CustomStringConvertible {
    package let description = "instance drain"
    package let drain: @Sendable () async -> Void

    package init(_ drain: @escaping @Sendable () async -> Void) { self.drain = drain }

    package func run() async throws {
        try? await gracefulShutdown()
        await drain()
    }
}
