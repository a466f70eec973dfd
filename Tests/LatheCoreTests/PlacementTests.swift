import Foundation
@testable import LatheCore
@testable import LatheStore
import Testing

@Suite("placing a new instance across the fleet")
struct PlacementTests {
    let version = String(repeating: "ab", count: 32)

    func place(_ id: String, skus: [String] = ["cpu"], cached: Set<String> = [], capacity: Int = 2, load: Int = 0, warm: Bool = false) -> Place {
        Place(location: .worker(id), skus: skus, cached: cached, capacity: capacity, load: load, warm: warm)
    }

    @Test("only places that offer the hardware and have room")
    func filters() {
        let places = [place("a", skus: ["cpu"]), place("b", skus: ["cpu-large"], load: 1), place("c", skus: ["cpu-large"], load: 2)]
        #expect(Placement.choose(version: version, sku: "cpu-large", among: places) == .worker("b"))
        #expect(Placement.choose(version: version, sku: "gpu-a100", among: places) == nil)
        #expect(!Placement.offered("gpu-a100", by: places) && Placement.offered("cpu-large", by: places))
        // Full everywhere: nothing, though the hardware is offered.
        #expect(Placement.choose(version: version, sku: "cpu", among: [place("a", load: 2)]) == nil)
    }

    @Test("warm first, then cached, then the least loaded share")
    func preferences() {
        let idle = place("idle", load: 0, warm: false)
        let cached = place("cached", cached: [version], load: 1)
        let warm = place("warm", load: 1, warm: true)
        #expect(Placement.choose(version: version, sku: "cpu", among: [idle, cached, warm]) == .worker("warm"))
        #expect(Placement.choose(version: version, sku: "cpu", among: [idle, cached]) == .worker("cached"))
        // The cache may name the version with its algorithm.
        #expect(Placement.choose(version: version, sku: "cpu", among: [idle, place("c2", cached: ["sha256:" + version], load: 1)]) == .worker("idle"))
        #expect(Placement.choose(version: "sha256:" + version, sku: "cpu", among: [idle, place("c3", cached: [version], load: 1)]) == .worker("c3"))
        // Least loaded by share of capacity, then the first listed.
        let big = place("big", capacity: 8, load: 3), small = place("small", capacity: 2, load: 1)
        #expect(Placement.choose(version: version, sku: "cpu", among: [small, big]) == .worker("big"))
        #expect(Placement.choose(version: version, sku: "cpu", among: [place("embedded"), place("w")]) == .worker("embedded"))
    }
}
