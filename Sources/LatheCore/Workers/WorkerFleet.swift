import Foundation
import LatheRunner
import Logging
import LatheStore

/// The workers, as this replica takes part in them (DESIGN §6); `lathe serve`'s embedded
/// worker is one. The fleet itself lives in the metadata store (``WorkerStore``): any replica
/// registers a worker, takes its heartbeat,
/// holds its long poll and places instances on it. What stays here is only what cannot be
/// shared: the long polls this replica holds, the instances it placed (whose predictions it
/// runs), and a copy of the fleet for placement, refreshed every second and on every event.
/// It decides nothing itself: the scheduler places instances, the fleet carries commands and
/// notices losses.
public final class WorkerFleet: @unchecked Sendable {
    /// How long a worker may stay silent before it is counted lost.
    public struct Settings: Sendable {
        public var lostAfter: TimeInterval = 30
        public init() {}
        package var heartbeat: TimeInterval { max(0.5, lostAfter / 6) }
        package var poll: TimeInterval { max(0.5, min(20, lostAfter / 3)) }
    }

    /// A registered worker, as the last look at the store found it.
    public struct Member: Sendable {
        public let id: String
        public let name: String
        package let tokenID: String
        public var version: String
        public var hardware: HardwareInventory
        public var capacity: Int
        public var cached: Set<String>
        /// The replica it runs inside (an embedded worker: only that replica places there); nil
        /// for a `lathe worker`.
        package var home: String?
        /// Instances other replicas placed there (they count against its capacity too).
        package var elsewhere = 0
        /// What its last heartbeat listed, and when it came.
        package var reported: Set<String> = []
        var reportedAt = Date.distantPast

        package init(_ record: WorkerRecord) {
            id = record.id
            name = record.name
            tokenID = record.tokenID
            version = record.version
            hardware = record.hardware
            capacity = record.capacity
            cached = record.cached
            reported = record.reported
            reportedAt = record.reportedAt
            home = record.home
        }
    }

    package let store: WorkerStore
    private let lock = NSLock()
    private var settingsValue = Settings()
    private var events: (any PredictionEvents)?
    private var replicaID = "local"
    private var replicaURL: @Sendable () -> String = { "" }
    private var logger = Logger(label: "lathe.fleet")
    private var members: [String: Member] = [:]
    /// When this replica last wrote each worker's `seen_until` (at most once a second).
    private var lastSeenWrite: [String: Date] = [:]
    private var pollers: [String: PollWaiter] = [:]
    /// Workers inside this process (the embedded worker), by id: their commands are handed over
    /// here instead of through the store and a long poll.
    private var locals: [String: any LocalWorker] = [:]
    private var instances: [String: RemoteInstance] = [:]
    /// Commands on their way into the store, in the order they were sent, and how many per worker.
    private var outbox: [(worker: String, command: WorkerCommand)] = []
    private var outboxDraining = false
    private var queuedFor: [String: Int] = [:]
    private var changeHandler: (@Sendable () -> Void)?

    public init(store: WorkerStore) {
        self.store = store
    }

    public var settings: Settings {
        get { lock.withLock { settingsValue } }
        set { lock.withLock { settingsValue = newValue } }
    }

    /// Joins the other replicas: events carry commands, losses and changes between them, and
    /// `url` is where they relay reports about the instances this replica placed.
    package func connect(events: any PredictionEvents, replica: String, url: @escaping @Sendable () -> String, logger: Logger) {
        lock.withLock {
            self.events = events
            replicaID = replica
            replicaURL = url
            self.logger = logger
        }
    }

    package var replica: String { lock.withLock { replicaID } }

    /// Called (outside the lock) when the fleet changed (a worker registered, or a cache
    /// changed), so the scheduler places what waits.
    func setChangeHandler(_ handler: @escaping @Sendable () -> Void) {
        lock.withLock { changeHandler = handler }
    }

    // MARK: - What workers say (through any replica)

    /// Registers a worker. One that registered before under the same name and token is
    /// replaced at once (it restarted): its instances are lost now rather than after the lease.
    /// `local`, when given, is a worker inside this process: this replica alone places on it,
    /// and its commands are handed to it directly.
    package func register(_ registration: WorkerRegistration, tokenID: String, local: (any LocalWorker)? = nil) async throws -> WorkerRegistered {
        let id = "w-" + UUID().uuidString.lowercased().prefix(12)
        let now = Date()
        let record = WorkerRecord(id: id, name: registration.name, tokenID: tokenID, version: registration.version, hardware: registration.hardware,
                                  capacity: max(0, min(registration.capacity, 1024)), cached: Set(registration.cached.prefix(10_000)),
                                  reported: [], reportedAt: now, seenUntil: now, home: local == nil ? nil : replica)
        let replaced = try await store.register(record)
        local?.joined(as: id)
        let settings = lock.withLock { () -> Settings in
            members[id] = Member(record)
            lastSeenWrite[id] = now
            if let local { locals[id] = local }
            return settingsValue
        }
        for old in replaced {
            dropLocal(old, reason: "worker \(registration.name) restarted and registered again")
            await events?.publish(.workerLost(old, .replaced))
        }
        await announceChange()
        return WorkerRegistered(id: id, heartbeatSeconds: settings.heartbeat, pollSeconds: settings.poll, lostAfterSeconds: settings.lostAfter)
    }

    /// The worker `id` if `tokenID` registered it (asking the store when this replica has not
    /// seen it yet); marks it seen.
    package func touch(_ id: String, tokenID: String, now: Date = Date()) async throws -> Member? {
        var member = lock.withLock { members[id] }
        if member == nil || member?.tokenID != tokenID {
            guard let record = try await store.worker(id, tokenID: tokenID) else { return nil }
            member = Member(record)
            lock.withLock { members[id] = member }
        }
        let write = lock.withLock { () -> Bool in
            guard now.timeIntervalSince(lastSeenWrite[id] ?? .distantPast) >= 1 else { return false }
            lastSeenWrite[id] = now
            return true
        }
        if write, try await !store.seen(id, until: now) {
            // Counted lost meanwhile (by this replica or another): it registers again.
            dropLocal(id, reason: lostReason(id))
            return nil
        }
        return member
    }

    /// A worker's heartbeat: its cache, and the instances it runs, reconciled with the ones the
    /// replicas placed there: a boot it never got is sent again, and an instance nobody placed
    /// (its replica gave up on it, died or restarted) is stopped.
    package func heartbeat(_ id: String, _ beat: WorkerHeartbeat, now: Date = Date()) async throws {
        let reported = Set(beat.instances.prefix(10_000))
        let cached = Set(beat.cached.prefix(10_000))
        guard let changed = try await store.heartbeat(id, cached: cached, reported: reported, at: now) else { return }
        lock.withLock {
            members[id]?.cached = cached
            members[id]?.reported = reported
            members[id]?.reportedAt = now
        }
        resendMissingBoots(of: id, reported: reported, at: now)
        let known = Set(try await store.instances(on: id).map(\.id))
        // `send` drops commands for a worker that is gone meanwhile.
        for orphan in reported.subtracting(known).sorted() {
            send(id, WorkerCommand(kind: .stop, instance: orphan))
        }
        if changed { await announceChange() }
    }

    /// The commands waiting for worker `id` after the one numbered `after` (the last it
    /// received), waiting up to `wait` seconds (at most 60) for one to come; an empty list when
    /// none did. The worker counts as present while it waits.
    package func poll(_ id: String, wait: TimeInterval, after: Int64 = 0) async -> [WorkerCommand] {
        let clamped = max(0, min(wait, 60))
        let deadline = Date().addingTimeInterval(clamped)
        let waiter = PollWaiter()
        let previous = lock.withLock { () -> PollWaiter? in
            defer { pollers[id] = waiter }
            return pollers[id]
        }
        previous?.supersede()
        defer { lock.withLock { if pollers[id] === waiter { pollers.removeValue(forKey: id) } } }
        if clamped > 0 { _ = try? await store.seen(id, until: deadline) }
        waiter.expire(at: deadline)
        while true {
            // Registered before taking: a command stored meanwhile wakes this poll, never slips by.
            let stored = (try? await store.commands(id, after: max(0, after))) ?? []
            let commands = waiter.answer(with: stored.compactMap { row in
                var command = try? JSONDecoder().decode(WorkerCommand.self, from: Data(row.command.utf8))
                command?.seq = row.seq
                return command
            })
            if !commands.isEmpty {
                // Present now, not until the deadline: silence from here on counts (unless a
                // newer poll of the worker holds it already).
                // Written after the answer leaves: it is not on the prediction's path.
                if clamped > 0, lock.withLock({ pollers[id] === waiter }) {
                    let (store, now) = (self.store, Date())
                    Task { _ = try? await store.pollAnswered(id, at: now) }
                }
                return commands
            }
            guard await waiter.wait() else { return waiter.answer(with: [], final: true) }
        }
    }

    // MARK: - What the scheduler asks

    /// Queues a command for worker `id` and wakes its long poll, wherever it is held: straight
    /// to a poll this replica holds when nothing is on its way to the store before it, else
    /// through the store (in the order sent) and an event to the replica holding the poll.
    package func send(_ id: String, _ command: WorkerCommand) {
        if let local = lock.withLock({ locals[id] }) { return local.send(command) }
        let drain = lock.withLock { () -> Bool in
            if queuedFor[id, default: 0] == 0, let waiter = pollers[id], waiter.hand(command) { return false }
            outbox.append((id, command))
            queuedFor[id, default: 0] += 1
            defer { outboxDraining = true }
            return !outboxDraining
        }
        if drain { Task { await self.drainOutbox() } }
    }

    private func drainOutbox() async {
        while let (worker, command) = lock.withLock({ () -> (String, WorkerCommand)? in
            guard !outbox.isEmpty else {
                outboxDraining = false
                return nil
            }
            return outbox.removeFirst()
        }) {
            do {
                try await store.send(worker, command: String(decoding: try JSONEncoder().encode(command), as: UTF8.self))
            } catch {
                lock.withLock { logger }.warning("could not queue a command for a worker", metadata: [
                    "worker": "\(worker)", "command": "\(command.kind)", "error": "\(RegistryDatabase.reason(error))"])
            }
            let (waiter, events) = lock.withLock { () -> (PollWaiter?, (any PredictionEvents)?) in
                queuedFor[worker, default: 1] -= 1
                if queuedFor[worker] == 0 { queuedFor.removeValue(forKey: worker) }
                return (pollers[worker], self.events)
            }
            if let waiter { waiter.wake() } else { await events?.publish(.workerCommands(worker)) }
        }
    }

    /// Another replica stored commands for worker `id`: wakes its long poll if held here.
    package func commandsWaiting(for id: String) {
        lock.withLock { pollers[id] }?.wake()
    }

    /// The registered workers, as this replica last saw them.
    public var workers: [Member] { lock.withLock { Array(members.values) } }

    /// Records an instance this replica places on its worker; false when the worker is full
    /// (counting every replica's instances) or gone.
    package func add(_ instance: RemoteInstance) async -> Bool {
        let record = WorkerInstanceRecord(id: instance.id, workerID: instance.workerID, replica: replica, replicaURL: lock.withLock { replicaURL }(),
                                          tokenID: instance.tokenID, modelID: instance.modelID)
        do {
            guard try await store.reserve(record, until: Date().addingTimeInterval(PredictionQueue.lease)) else { return false }
        } catch {
            return false
        }
        lock.withLock { instances[instance.id] = instance }
        return true
    }

    /// Forgets an instance that stopped; its slot on the worker frees.
    package func remove(_ instance: RemoteInstance) {
        let known = lock.withLock { instances.removeValue(forKey: instance.id) != nil }
        guard known else { return }
        let store = self.store
        Task {
            try? await store.release(instance.id)
            // Its slot is free: a replica waiting for room on that worker places its work now.
            await announceChange()
        }
    }

    /// The instance `id` if this replica placed it on worker `worker`.
    package func instance(_ id: String, on worker: String) -> RemoteInstance? {
        lock.withLock { instances[id].flatMap { $0.workerID == worker ? $0 : nil } }
    }

    /// The replica that placed instance `id` on worker `worker` (reports about it go there).
    package func owner(of id: String, on worker: String) async throws -> WorkerInstanceRecord? {
        try await store.instance(id, on: worker)
    }

    /// Whether the worker token `tokenID` may pull versions of `modelID` now: while an instance
    /// of it runs on a worker with that token, whichever replica placed it.
    public func mayPull(tokenID: String, modelID: String) async -> Bool {
        (try? await store.mayPull(tokenID: tokenID, modelID: modelID)) ?? false
    }

    // MARK: - Keeping the picture true

    /// Once a second on every replica: renews the leases of this replica's instances, counts
    /// lost every worker not heard from for `lostAfter` (a held long poll counts as heard) and
    /// ends the instances there, forgets instances of replicas that died, and looks at the
    /// fleet again. Returns the names of the workers this call counted lost.
    @discardableResult
    package func sweep(now: Date = Date()) async -> [String] {
        let (replica, lostAfter) = lock.withLock { (replicaID, settingsValue.lostAfter) }
        var lostNames: [String] = []
        do {
            try await store.renew(replica: replica, until: now.addingTimeInterval(PredictionQueue.lease))
            try await store.expireInstances(now: now)
            for gone in try await store.expire(notSeenSince: now.addingTimeInterval(-lostAfter)) {
                lostNames.append(gone.name)
                dropLocal(gone.id, reason: lostReason(gone.id, name: gone.name))
                await lock.withLock { events }?.publish(.workerLost(gone.id, .silent))
            }
            try await refresh()
        } catch {
            lock.withLock { logger }.warning("could not look at the fleet", metadata: ["error": "\(RegistryDatabase.reason(error))"])
        }
        return lostNames
    }

    /// Reads the fleet again: workers, and how many instances other replicas hold on each.
    /// Instances placed here on a worker that is gone end now (an event may have been missed),
    /// and boots the workers' heartbeats do not list are sent again.
    package func refresh() async throws {
        let records = try await store.workers()
        let placed = try await store.instances()
        let mine = lock.withLock { () -> [RemoteInstance] in
            var fresh: [String: Member] = [:]
            for record in records { fresh[record.id] = Member(record) }
            for instance in placed where instance.replica != replicaID { fresh[instance.workerID]?.elsewhere += 1 }
            members = fresh
            lastSeenWrite = lastSeenWrite.filter { fresh[$0.key] != nil }
            return Array(instances.values)
        }
        var orphaned: Set<String> = []
        for instance in mine where !records.contains(where: { $0.id == instance.workerID }) { orphaned.insert(instance.workerID) }
        for worker in orphaned { dropLocal(worker, reason: lostReason(worker)) }
        for record in records { resendMissingBoots(of: record.id, reported: record.reported, at: record.reportedAt) }
    }

    /// A worker leaves (it shuts down, its instances stopped): its row goes at once, and the
    /// predictions on it end now (running again elsewhere when they had emitted nothing) instead
    /// of when it would have been counted lost.
    package func leave(_ id: String) async {
        do {
            try await store.remove(id)
        } catch {
            lock.withLock { logger }.warning("could not remove a worker that left", metadata: ["worker": "\(id)", "error": "\(RegistryDatabase.reason(error))"])
        }
        dropLocal(id, reason: reason(id, .left))
        await lock.withLock { events }?.publish(.workerLost(id, .left))
    }

    /// Another replica counted worker `id` lost (or it registered again): its instances here end.
    package func lostElsewhere(_ id: String, _ why: WorkerLoss) {
        dropLocal(id, reason: reason(id, why))
    }

    private func reason(_ id: String, _ why: WorkerLoss) -> String {
        let name = lock.withLock { members[id]?.name ?? instances.values.first { $0.workerID == id }?.workerName ?? id }
        switch why {
        case .silent: return lostReason(id, name: name)
        case .replaced: return "worker \(name) restarted and registered again"
        case .left: return "worker \(name) left the fleet: it shut down"
        }
    }

    private func lostReason(_ id: String, name: String? = nil) -> String {
        let (known, lostAfter) = lock.withLock { (members[id]?.name ?? instances.values.first { $0.workerID == id }?.workerName, settingsValue.lostAfter) }
        return "worker \(name ?? known ?? id) (\(id)) was lost: nothing heard from it for \(Int(lostAfter)) s"
    }

    private func resendMissingBoots(of worker: String, reported: Set<String>, at time: Date) {
        let (placed, grace) = lock.withLock { (instances.values.filter { $0.workerID == worker }, settingsValue.heartbeat * 2) }
        // Two heartbeats: a beat sent just before the boot arrived does not list it yet.
        for instance in placed { instance.resendBootIfMissing(reported: reported, grace: grace, now: time) }
    }

    /// Forgets worker `id` here and ends the instances this replica placed on it.
    private func dropLocal(_ id: String, reason: String) {
        let (theirs, poller) = lock.withLock { () -> ([RemoteInstance], PollWaiter?) in
            members.removeValue(forKey: id)
            locals.removeValue(forKey: id)
            lastSeenWrite.removeValue(forKey: id)
            let theirs = instances.values.filter { $0.workerID == id }
            for instance in theirs { instances.removeValue(forKey: instance.id) }
            return (theirs, pollers.removeValue(forKey: id))
        }
        poller?.supersede()
        for instance in theirs { instance.lost(reason) }
    }

    private func announceChange() async {
        let (events, handler) = lock.withLock { (self.events, changeHandler) }
        // Every replica (this one too) hears the event and places what waits.
        if let events { await events.publish(.fleetChanged) } else { handler?() }
    }
}
