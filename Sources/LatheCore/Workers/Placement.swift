import Foundation

/// Where an instance runs: a worker of the fleet (the embedded worker is one), by id.
package struct InstanceLocation: Hashable, Sendable, CustomStringConvertible {
    package var workerID: String

    package static func worker(_ id: String) -> InstanceLocation { InstanceLocation(workerID: id) }

    package var description: String { workerID }
}

/// A place that can run instances, as the autoscaler sees it when it places one.
package struct Place: Sendable, Equatable {
    package var location: InstanceLocation
    package var skus: [String]
    /// Version ids the place has in its cache.
    package var cached: Set<String>
    package var capacity: Int
    /// Instances running or booting there.
    package var load: Int
    /// Whether it already runs an instance of the version being placed (its environment is built).
    package var warm: Bool

    var hasRoom: Bool { load < capacity }
}

/// Chooses where a new instance goes (DESIGN §6). A pure function of what it is shown, so the
/// preferences are unit-tested: only places offering the SKU, with room; then those that run
/// the version already, then those that have it cached, then the least loaded (by share of
/// capacity); ties go to the first listed.
package enum Placement {
    package static func choose(version: String, sku: String, among places: [Place]) -> InstanceLocation? {
        let hex = version.hasPrefix("sha256:") ? String(version.dropFirst(7)) : version
        func rank(_ place: Place) -> (Int, Double) {
            let cached = place.cached.contains(version) || place.cached.contains(hex)
            return (place.warm ? 0 : cached ? 1 : 2, Double(place.load) / Double(max(1, place.capacity)))
        }
        return places.filter { $0.skus.contains(sku) && $0.hasRoom }.min { rank($0) < rank($1) }?.location
    }

    /// Whether any place offers `sku` at all, full or not.
    package static func offered(_ sku: String, by places: [Place]) -> Bool {
        places.contains { $0.skus.contains(sku) }
    }
}
