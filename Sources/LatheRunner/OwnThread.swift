import Foundation

/// Runs blocking work (unpacking, environment builds: seconds to minutes) on a thread of its
/// own and returns its result, so it never holds a thread of Swift's cooperative pool or an
/// actor's executor.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}
