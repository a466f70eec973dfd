import Foundation
import Testing
@testable import LatheRunner

@Suite("deadlines: one thread for the timers predictions set and cancel")
struct DeadlinesTests {
    /// Records what ran, and when.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [(String, Date)] = []
        func add(_ name: String) { lock.withLock { entries.append((name, Date())) } }
        var names: [String] { lock.withLock { entries.map(\.0) } }
        func time(of name: String) -> Date? { lock.withLock { entries.first { $0.0 == name }?.1 } }
    }

    @Test("actions run at their deadlines in order; a cancelled one never runs; one set earlier than the one waited for wakes the thread")
    func deadlines() async throws {
        let clock = Deadlines(slack: 0.002)
        let log = Log()
        let started = Date()
        clock.after(0.6) { log.add("late") }
        let cancelled = clock.after(0.2) { log.add("cancelled") }
        // Set after a later one: the thread, asleep until 0.2 s, must wake for it.
        clock.after(0.1) { log.add("early") }
        clock.cancel(cancelled)
        clock.after(0.3) { log.add("middle") }
        try await Task.sleep(nanoseconds: 900_000_000)
        #expect(log.names == ["early", "middle", "late"])
        let early = try #require(log.time(of: "early")).timeIntervalSince(started)
        let late = try #require(log.time(of: "late")).timeIntervalSince(started)
        #expect(early >= 0.1 && early < 0.25, "ran at \(early) s")
        #expect(late >= 0.6 && late < 0.8, "ran at \(late) s")
        // Nothing left: an action set now still runs.
        clock.after(0) { log.add("now") }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(log.names.last == "now")
    }
}
