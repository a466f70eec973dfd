import Foundation
import LatheRunner

/// The remote workers this server decides for (DESIGN §6): who registered, what hardware they
/// offer and cache, the commands waiting for each one's long poll, the instances on them, and
/// who stopped answering. It decides nothing itself: the scheduler places instances, the fleet
/// carries commands and notices losses.
public final class WorkerFleet: @unchecked Sendable {
    /// How long a worker may stay silent before it is counted lost.
    public struct Settings: Sendable {
        public var lostAfter: TimeInterval = 30
        public init() {}
        var heartbeat: TimeInterval { max(0.5, lostAfter / 6) }
        var poll: TimeInterval { max(0.5, min(20, lostAfter / 3)) }
    }

    /// A registered worker.
    public struct Member: Sendable {
        public let id: String
        public let name: String
        let tokenID: String
        public var version: String
        public var hardware: HardwareInventory
        public var capacity: Int
        public var cached: Set<String>
        var lastSeen: Date
        /// A long poll is waiting: the worker counts as present while it does.
        var polling = false
    }

    private let lock = NSLock()
    private var settingsValue = Settings()
    private var members: [String: Member] = [:]
    private var outboxes: [String: [WorkerCommand]] = [:]
    private var pollers: [String: (token: UUID, continuation: CheckedContinuation<[WorkerCommand], Never>)] = [:]
    private var instances: [String: RemoteInstance] = [:]
    /// Models each worker token may pull over /v2: counted per booted instance, so a private
    /// version is readable by a worker only while it was asked to run it.
    private var grants: [String: [String: Int]] = [:]
    private var changeHandler: (@Sendable () -> Void)?

    public init() {}

    public var settings: Settings {
        get { lock.withLock { settingsValue } }
        set { lock.withLock { settingsValue = newValue } }
    }

    /// Called (outside the lock) when a worker registers or heartbeats a changed cache, so the
    /// scheduler places what waits.
    func setChangeHandler(_ handler: @escaping @Sendable () -> Void) {
        lock.withLock { changeHandler = handler }
    }

    // MARK: - What workers say

    /// Registers a worker. One that registered before under the same name and token is
    /// replaced at once (it restarted): its instances are lost now rather than after the lease.
    func register(_ registration: WorkerRegistration, tokenID: String) -> WorkerRegistered {
        let id = "w-" + UUID().uuidString.lowercased().prefix(12)
        let (replaced, settings, handler) = lock.withLock { () -> ([RemoteInstance], Settings, (@Sendable () -> Void)?) in
            var replaced: [RemoteInstance] = []
            for (oldID, member) in members where member.name == registration.name && member.tokenID == tokenID {
                replaced += dropLocked(oldID)
            }
            members[id] = Member(id: id, name: registration.name, tokenID: tokenID, version: registration.version,
                                 hardware: registration.hardware, capacity: max(0, min(registration.capacity, 1024)),
                                 cached: Set(registration.cached.prefix(10_000)), lastSeen: Date())
            return (replaced, settingsValue, changeHandler)
        }
        for instance in replaced { instance.lost("worker \(registration.name) restarted and registered again") }
        handler?()
        return WorkerRegistered(id: id, heartbeatSeconds: settings.heartbeat, pollSeconds: settings.poll, lostAfterSeconds: settings.lostAfter)
    }

    /// The worker `id` if `tokenID` registered it; marks it seen.
    func touch(_ id: String, tokenID: String) -> Member? {
        lock.withLock {
            guard var member = members[id], member.tokenID == tokenID else { return nil }
            member.lastSeen = Date()
            members[id] = member
            return member
        }
    }

    /// A worker's heartbeat: its cache, and the instances it runs, reconciled with the ones this
    /// server placed there: a boot the worker never got is sent again, and an instance the server
    /// does not know (it gave up on it, or restarted) is stopped.
    func heartbeat(_ id: String, _ beat: WorkerHeartbeat, now: Date = Date()) {
        let reported = Set(beat.instances.prefix(10_000))
        let (handler, placed, grace) = lock.withLock { () -> ((@Sendable () -> Void)?, [RemoteInstance], TimeInterval) in
            guard members[id] != nil else { return (nil, [], 0) }
            let placed = instances.values.filter { $0.workerID == id }
            // Two heartbeats: a beat sent just before the boot arrived does not list it yet.
            let grace = settingsValue.heartbeat * 2
            let cached = Set(beat.cached.prefix(10_000))
            guard members[id]?.cached != cached else { return (nil, placed, grace) }
            members[id]?.cached = cached
            return (changeHandler, placed, grace)
        }
        for instance in placed { instance.resendBootIfMissing(reported: reported, grace: grace, now: now) }
        let known = Set(placed.map(\.id))
        // `send` drops commands for a worker that is gone meanwhile.
        for orphan in reported.subtracting(known).sorted() {
            send(id, WorkerCommand(kind: .stop, instance: orphan))
        }
        handler?()
    }

    /// The commands waiting for worker `id`, waiting up to `wait` seconds (at most 60) for one
    /// to come; an empty list when none did.
    func poll(_ id: String, wait: TimeInterval) async -> [WorkerCommand] {
        let clamped = max(0, min(wait, 60))
        let token = UUID()
        return await withCheckedContinuation { continuation in
            let (ready, previous) = lock.withLock { () -> ([WorkerCommand]?, CheckedContinuation<[WorkerCommand], Never>?) in
                if let waiting = outboxes[id], !waiting.isEmpty {
                    outboxes[id] = []
                    return (waiting, nil)
                }
                if clamped == 0 { return ([], nil) }
                let previous = pollers[id]?.continuation
                pollers[id] = (token, continuation)
                members[id]?.polling = true
                return (nil, previous)
            }
            previous?.resume(returning: [])
            if let ready {
                continuation.resume(returning: ready)
                return
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + clamped) { [weak self] in
                guard let self else { return }
                let expired = self.lock.withLock { () -> CheckedContinuation<[WorkerCommand], Never>? in
                    guard let poller = self.pollers[id], poller.token == token else { return nil }
                    self.pollers.removeValue(forKey: id)
                    self.members[id]?.polling = false
                    self.members[id]?.lastSeen = Date()
                    return poller.continuation
                }
                expired?.resume(returning: [])
            }
        }
    }

    // MARK: - What the scheduler asks

    /// Queues a command for worker `id` and wakes its long poll.
    func send(_ id: String, _ command: WorkerCommand) {
        let poller = lock.withLock { () -> CheckedContinuation<[WorkerCommand], Never>? in
            guard members[id] != nil else { return nil }
            if let poller = pollers.removeValue(forKey: id) {
                members[id]?.polling = false
                members[id]?.lastSeen = Date()
                return poller.continuation
            }
            outboxes[id, default: []].append(command)
            return nil
        }
        poller?.resume(returning: [command])
    }

    /// Registered workers, as they stand.
    public var workers: [Member] { lock.withLock { Array(members.values) } }

    func add(_ instance: RemoteInstance) {
        lock.withLock {
            instances[instance.id] = instance
            grants[instance.tokenID, default: [:]][instance.modelID, default: 0] += 1
        }
    }

    func remove(_ instance: RemoteInstance) {
        lock.withLock { removeLocked(instance) }
    }

    private func removeLocked(_ instance: RemoteInstance) {
        guard instances.removeValue(forKey: instance.id) != nil else { return }
        let left = (grants[instance.tokenID]?[instance.modelID] ?? 1) - 1
        grants[instance.tokenID]?[instance.modelID] = left > 0 ? left : nil
    }

    /// The instance `id` if it lives on worker `worker`.
    func instance(_ id: String, on worker: String) -> RemoteInstance? {
        lock.withLock { instances[id].flatMap { $0.workerID == worker ? $0 : nil } }
    }

    /// Whether the worker token `tokenID` may pull versions of `modelID` now.
    public func mayPull(tokenID: String, modelID: String) -> Bool {
        lock.withLock { (grants[tokenID]?[modelID] ?? 0) > 0 }
    }

    /// Counts lost every worker not heard from for `lostAfter` (a waiting long poll counts as
    /// heard) and ends their instances. Returns the names of the lost workers.
    @discardableResult
    func expire(now: Date = Date()) -> [String] {
        let (lost, dropped) = lock.withLock { () -> ([Member], [(RemoteInstance, String)]) in
            let limit = settingsValue.lostAfter
            let gone = members.values.filter { !$0.polling && now.timeIntervalSince($0.lastSeen) > limit }
            var dropped: [(RemoteInstance, String)] = []
            for member in gone {
                for instance in dropLocked(member.id) {
                    dropped.append((instance, "worker \(member.name) (\(member.id)) was lost: nothing heard from it for \(Int(limit)) s"))
                }
            }
            return (gone, dropped)
        }
        for (instance, reason) in dropped { instance.lost(reason) }
        return lost.map(\.name)
    }

    /// Forgets worker `id` and returns its instances (the caller ends them outside the lock).
    private func dropLocked(_ id: String) -> [RemoteInstance] {
        members.removeValue(forKey: id)
        outboxes.removeValue(forKey: id)
        if let poller = pollers.removeValue(forKey: id) { poller.continuation.resume(returning: []) }
        let theirs = instances.values.filter { $0.workerID == id }
        for instance in theirs { removeLocked(instance) }
        return theirs
    }
}
