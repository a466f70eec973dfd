import Foundation
import LatheSpec

extension Task where Success == Never, Failure == Never {
    /// Sleeps for `seconds`, whatever number it is given: NaN, negative and infinite values sleep
    /// not at all or at most a day at a time, so no caller can trap converting to nanoseconds.
    package static func sleep(seconds: Double) async throws {
        guard seconds.isFinite, seconds > 0 else { return }
        var remaining = seconds
        while remaining > 0 {
            let step = min(remaining, 86_400)
            try await Task.sleep(nanoseconds: UInt64(step * 1_000_000_000))
            remaining -= step
        }
    }
}

extension JSONValue {
    /// `.string` or `.null`.
    package static func optional(_ text: String?) -> JSONValue { text.map(JSONValue.string) ?? .null }
}

/// Specs by manifest digest: a version's content never changes, so it is decoded once.
package final class SpecCache: @unchecked Sendable {
    package static let shared = SpecCache()
    private let lock = NSLock()
    private var specs: [String: ModelSpec] = [:]

    package func get(_ key: String) -> ModelSpec? { lock.withLock { specs[key] } }

    package func set(_ key: String, _ spec: ModelSpec) {
        lock.withLock {
            if specs.count > 1000 { specs.removeAll() }
            specs[key] = spec
        }
    }
}
