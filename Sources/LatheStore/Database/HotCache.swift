import Foundation

/// A small in-memory cache in front of rows that every prediction request reads (its token, its
/// version), so the hot path does not wait on SQLite. An entry lives `lifetime` seconds at most,
/// which bounds how long a change made by another process (`lathe admin`) takes to show; this
/// process's own writes drop the entries they affect at once.
final class HotCache<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: (value: Value, expires: Date)] = [:]
    private let lifetime: TimeInterval
    private let capacity: Int

    package init(lifetime: TimeInterval = 10, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    package func get(_ key: String) -> Value? {
        lock.withLock {
            guard let entry = entries[key] else { return nil }
            if entry.expires < Date() {
                entries.removeValue(forKey: key)
                return nil
            }
            return entry.value
        }
    }

    package func set(_ key: String, _ value: Value) {
        lock.withLock {
            if entries.count >= capacity { entries.removeAll() }
            entries[key] = (value, Date().addingTimeInterval(lifetime))
        }
    }

    package func removeAll() {
        lock.withLock { entries.removeAll() }
    }
}

/// The caches a registry's stores share (one set per database). A store that changes what they
/// hold calls ``changed()``: this process drops them at once and, through the hook set by the
/// server, every other replica does too (a NOTIFY on PostgreSQL), so a revoked token or a model
/// made private is refused everywhere within moments, not after `lifetime`.
package final class RegistryCaches: @unchecked Sendable {
    private let lock = NSLock()
    private var onChange: (@Sendable () -> Void)?

    /// Called after every local change (set once by the server to tell the other replicas).
    package func setChangeHandler(_ handler: @escaping @Sendable () -> Void) {
        lock.withLock { onChange = handler }
    }

    /// This process changed accounts, tokens, memberships, models or versions.
    package func changed() {
        clear()
        let handler = lock.withLock { onChange }
        handler?()
    }

    /// Another replica changed them.
    package func clear() {
        tokens.removeAll()
        versions.removeAll()
        models.removeAll()
        latestVersions.removeAll()
    }

    struct CachedToken: Sendable {
        package var tokenID: String
        package var principal: Principal
        /// `last_used_at` as last written (the minute it names is written once).
        package var lastUsedAt: String?
    }

    /// Token hash → the principal it stands for.
    let tokens = HotCache<CachedToken>()
    /// Version id → every model holding it, newest first (visibility is checked per viewer).
    let versions = HotCache<[(ModelRecord, VersionRecord)]>()
    /// "owner/name" → the model, whatever its visibility (checked per viewer).
    let models = HotCache<ModelRecord>()
    /// Model id → its newest version.
    let latestVersions = HotCache<VersionRecord>()
}
