import Foundation

/// Wakes whoever follows a prediction (server-sent event streams) when it changed: its progress
/// was written or it finished, on this replica or, told by `NOTIFY`, on another. A follower
/// registers before it reads, so a change between its read and its wait is never lost.
package final class PredictionSignals: @unchecked Sendable {
    /// One stream's interest in one prediction.
    package final class Follower: @unchecked Sendable {
        fileprivate var changed = false
        fileprivate var continuation: CheckedContinuation<Bool, Never>?
    }

    private let lock = NSLock()
    private var followers: [String: [ObjectIdentifier: Follower]] = [:]

    /// Starts following `id`; pair with ``stop(_:following:)``.
    package func follow(_ id: String) -> Follower {
        let follower = Follower()
        lock.withLock { followers[id, default: [:]][ObjectIdentifier(follower)] = follower }
        return follower
    }

    package func stop(_ follower: Follower, following id: String) {
        let waiting: CheckedContinuation<Bool, Never>? = lock.withLock {
            followers[id]?.removeValue(forKey: ObjectIdentifier(follower))
            if followers[id]?.isEmpty == true { followers.removeValue(forKey: id) }
            defer { follower.continuation = nil }
            return follower.continuation
        }
        waiting?.resume(returning: false)
    }

    /// Returns true at once if `id` changed since the last call, else waits for a change (true)
    /// or `seconds` (false).
    package func next(_ follower: Follower, seconds: Double) async -> Bool {
        var timer: Task<Void, Never>?
        let woken = await withCheckedContinuation { continuation in
            let ready: Bool = lock.withLock {
                if follower.changed {
                    follower.changed = false
                    return true
                }
                follower.continuation = continuation
                return false
            }
            if ready {
                continuation.resume(returning: true)
            } else {
                timer = Task { [weak self] in
                    try? await Task.sleep(seconds: seconds)
                    // A timer left over from an earlier wait must not end a later one (a
                    // false answer would only cost the stream an extra read, but be exact).
                    guard !Task.isCancelled else { return }
                    self?.resume(follower, with: false)
                }
            }
        }
        timer?.cancel()
        return woken
    }

    /// `id` changed: every follower's next wait returns at once.
    package func changed(_ id: String) {
        let waiting: [CheckedContinuation<Bool, Never>] = lock.withLock {
            guard let current = followers[id] else { return [] }
            var waiting: [CheckedContinuation<Bool, Never>] = []
            for follower in current.values {
                if let continuation = follower.continuation {
                    follower.continuation = nil
                    waiting.append(continuation)
                } else {
                    follower.changed = true
                }
            }
            return waiting
        }
        for continuation in waiting { continuation.resume(returning: true) }
    }

    private func resume(_ follower: Follower, with value: Bool) {
        let waiting: CheckedContinuation<Bool, Never>? = lock.withLock {
            defer { follower.continuation = nil }
            return follower.continuation
        }
        waiting?.resume(returning: value)
    }
}
