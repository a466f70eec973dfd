import Foundation
@testable import LatheCore
@testable import LatheStore
import Logging
import ServiceLifecycle
import Testing

/// The scheduler's chores as services of one group: each runs on its interval, a leader-only
/// one only while this replica leads, and graceful shutdown ends them and drains at once.
@Suite("background work as services")
struct BackgroundServicesTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [String: Int] = [:]
        func add(_ name: String) { lock.withLock { values[name, default: 0] += 1 } }
        subscript(_ name: String) -> Int { lock.withLock { values[name, default: 0] } }
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Bool
        init(_ value: Bool) { self.value = value }
        var isSet: Bool { lock.withLock { value } }
        func set(_ new: Bool) { lock.withLock { value = new } }
    }

    @Test("periodic services run on their interval, the leader's only while leading, and stop at graceful shutdown after the drain")
    func periodic() async throws {
        let counter = Counter(), leading = Flag(false)
        var logger = Logger(label: "services")
        logger.logLevel = .critical
        let group = ServiceGroup(services: [
            PeriodicService("everyone", every: 0.05) { counter.add("everyone") },
            PeriodicService("singleton", every: 0.05, leader: { leading.isSet }) { counter.add("singleton") },
            DrainOnShutdown { counter.add("drained") },
        ], gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let running = Task { try await group.run() }
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(counter["everyone"] >= 3 && counter["singleton"] == 0, "a replica that does not lead runs no singleton")
        leading.set(true)
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(counter["singleton"] >= 3)
        #expect(counter["drained"] == 0)
        let started = Date()
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(Date().timeIntervalSince(started) < 2, "shutdown does not wait out the intervals")
        #expect(counter["drained"] == 1)
    }
}
