import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheSpec
import LatheTestSupport
import Testing

@Suite("autoscaling", .serialized)
struct AutoscalingTests {
    /// Submits 40 predictions of 200 ms at once and returns seconds until all succeeded.
    func burst(maxInstances: Int) async throws -> (TimeInterval, Int, RegistryServer) {
        let server = try RegistryServer(arguments: ["--max-instances", String(maxInstances), "--max-instances-per-account", "4", "--idle-timeout", "2"])
        let token = try server.user("alice")
        let home = try TestSupport.makeProject([:])
        let version = try pushFixture("sleeper", code: sleeper, server: server, token: token, home: home)
        // Warm the environment once so both runs compare scheduling, not the first uv install.
        _ = try predict(version, #"{"seconds": 0}"#, server: server, token: token, wait: true)
        // The most instances seen while the burst runs.
        let peak = PeakCounter()
        let sampler = Task.detached {
            while !Task.isCancelled {
                peak.observe((try? modelProcesses(server).count) ?? 0)
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        defer { sampler.cancel() }
        let started = Date()
        // All 40 at once, as concurrent requests.
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    var request = URLRequest(url: URL(string: server.url + "/v1/predictions")!)
                    request.httpMethod = "POST"
                    request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
                    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                    request.httpBody = Data(#"{"version":"\#(version)","input":{"seconds":0.2}}"#.utf8)
                    let (data, _) = try await URLSession.shared.data(for: request)
                    return try JSONDecoder().decode([String: JSONValue].self, from: data)["id"]?.stringValue ?? ""
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        for id in ids {
            #expect(try poll(id, server: server, token: token)["status"] == .string("succeeded"))
        }
        return (Date().timeIntervalSince(started), peak.value, server)
    }

    @Test("40 predictions of 200 ms finish about max-instances times faster with 4 instances than with 1; idle instances stop")
    func scaling() async throws {
        let (single, _, first) = try await burst(maxInstances: 1)
        first.stop()
        let (four, peak, second) = try await burst(maxInstances: 4)
        defer { second.stop() }
        let speedup = single / four
        print("autoscaling: 1 instance \(single) s, 4 instances \(four) s, speed-up \(speedup)×")
        #expect(single >= 8, "one instance runs them one after another: \(single) s")
        #expect(speedup >= 2.5, "speed-up \(speedup)× (ideal 4×, cold boots included)")
        #expect(peak >= 4, "four instances ran at once (model processes seen: \(peak))")
        let deadline = Date().addingTimeInterval(10)
        while try !modelProcesses(second).isEmpty, Date() < deadline { usleep(200_000) }
        #expect(try modelProcesses(second).isEmpty, "after the idle time no instance is left (scale to zero)")
    }
}

/// The largest value observed, from a sampling task.
final class PeakCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var peak = 0
    func observe(_ value: Int) { lock.withLock { peak = max(peak, value) } }
    var value: Int { lock.withLock { peak } }
}
