import Foundation

/// What the decider is shown: a copy of the queues, instances, boots and places at one moment,
/// holding no references, so ``Decider/plan(_:versions:)`` is a pure function of it.
package struct FleetView: Sendable {
    /// One instance: where it runs, for whom, and how full it is.
    package struct Instance: Sendable, Equatable {
        package var key: Int
        package var version: String
        package var account: String
        package var location: InstanceLocation
        package var sku: String
        package var running = 0
        /// Predictions it may run at once (the spec's `concurrency`).
        package var slots = 1
        /// False once its process crashed or its worker was lost.
        package var alive = true
        package var lastUsed = Date()
        /// The GPUs it holds, by SKU (free again when it stops).
        package var gpus: [String] = []

        package var busy: Bool { running > 0 }
        var hasRoom: Bool { running < slots }
    }

    /// A prediction waiting in this replica's queue of a version.
    package struct Waiting: Sendable, Equatable {
        package var id: String
        package var account: String
        package var createdAt: String
        /// When it joined this replica's queue.
        package var queuedAt = Date()
    }

    /// A deployment's bounds on a version's instances, and the account that owns it.
    package struct Bounds: Sendable, Equatable {
        package var min: Int
        package var max: Int
        package var account: String
    }

    /// A version with waiting work or instances.
    package struct Version: Sendable {
        package var queue: [Waiting] = []
        /// Waiting predictions beyond those in `queue`: the view lists only as many as the
        /// version's free slots and boots in flight can take, plus one (a queue of thousands is
        /// not copied on every enqueue).
        package var waitingBeyond = 0
        /// The SKU it runs on (its deployment's, else its model's).
        package var sku = "cpu"
        /// Predictions one instance of it runs at once.
        package var concurrency = 1
        /// Instances of it being booted.
        package var booting = 0
        package var bounds: Bounds?
    }

    /// A worker that runs instances, with the instances other replicas placed there (its
    /// capacity is shared).
    package struct Offer: Sendable, Equatable {
        package var location: InstanceLocation
        package var skus: [String]
        package var cached: Set<String> = []
        package var capacity: Int
        package var elsewhere = 0
        /// Its GPUs, one SKU per GPU.
        package var gpus: [String] = []
        /// Whether every replica places on it (a `lathe worker`), not only this one (this
        /// replica's embedded worker): room made there helps the others.
        package var shared = true
    }

    package var versions: [String: Version] = [:]
    package var instances: [Instance] = []
    /// Boots in flight, by the account they are for and by where they go.
    var bootingFor: [String: Int] = [:]
    var bootingAt: [InstanceLocation: Int] = [:]
    package var offers: [Offer] = []
    /// GPUs taken by boots in flight, by place (one SKU per GPU).
    package var gpusBooting: [InstanceLocation: [String]] = [:]
    package var maxInstancesPerVersion = 2
    /// Most instances one account's work may hold.
    package var perAccountLimit = 1
    /// Whether this replica keeps deployments' minimums (the leader does).
    package var isLeader = true
    /// Whether replicas share the queue (PostgreSQL): one without a worker hands work back.
    package var sharedQueue = false
    /// When the view was taken.
    package var now = Date()
    /// How long work waits for a full fleet before this replica asks the others for room
    /// (shorter waits are a busy fleet, not one held by idle instances).
    package var roomAfter: TimeInterval = 1
}

/// What the scheduler does for a plan, in order.
package enum SchedulerAction: Sendable, Equatable {
    /// Runs a waiting prediction on an instance with a free slot.
    case start(prediction: String, version: String, instance: Int)
    /// Stops an instance: idle on hardware its version no longer asks for, idle past the
    /// timeout, crashed, or evicted to make room.
    case retire(instance: Int)
    /// Cold-boots an instance of `version` for `account` at a place.
    case boot(version: String, account: String, at: InstanceLocation)
    /// Gives the version's waiting work back to the shared queue (nothing here can run it).
    case handBack(version: String)
    /// Tells the version's waiting predictions that no worker offers `sku` yet.
    case waitForHardware(version: String, sku: String)
    /// Asks the other replicas for room on a worker offering `sku`: every one is full, and
    /// nothing this replica holds there is idle (``Decider/yieldRoom(_:sku:now:minIdle:)``).
    case wantRoom(sku: String)
}

/// Decides what runs where (DESIGN §6): pure, so every rule is unit-tested the way
/// ``Placement`` is, and the scheduler only applies what it returns. Per version, in the order
/// given: idle instances on stale hardware go; waiting predictions take free slots; then at
/// most one boot, when work waits beyond what the boots in flight will take, or a deployment is
/// below its minimum (the leader only), within the version's and the account's limits, evicting
/// an idle instance (the account's own first) when that is the only room.
package struct Decider {
    private(set) var view: FleetView
    private(set) var actions: [SchedulerAction] = []

    /// The actions for `versions`, each seeing what the ones before it decided.
    package static func plan(_ view: FleetView, versions: [String]) -> [SchedulerAction] {
        var decider = Decider(view: view)
        for version in versions { decider.decide(version) }
        return decider.actions
    }

    /// Versions with waiting work, fairly: those whose first waiting prediction's account holds
    /// the fewest instances first, then the oldest.
    package static func fairOrder(_ view: FleetView) -> [String] {
        let decider = Decider(view: view)
        let waiting = view.versions.compactMap { entry in entry.value.queue.first.map { (version: entry.key, job: $0) } }
        return waiting.sorted { a, b in
            let (ca, cb) = (decider.instanceCount(of: a.job.account), decider.instanceCount(of: b.job.account))
            return ca != cb ? ca < cb : (a.job.createdAt, a.version) < (b.job.createdAt, b.version)
        }.map(\.version)
    }

    /// Instances to stop: crashed or lost ones at once, and idle ones unused for `idleTimeout`
    /// beyond a deployment's minimum (the least recently used go first).
    package static func scaleDown(_ view: FleetView, now: Date, idleTimeout: TimeInterval) -> [SchedulerAction] {
        var actions: [SchedulerAction] = []
        for version in Set(view.instances.map(\.version)).sorted() {
            let mine = view.instances.filter { $0.version == version }
            let keep = view.versions[version]?.bounds?.min ?? 0
            let gone = mine.filter { !$0.busy && !$0.alive }
            let alive = mine.filter { $0.busy || $0.alive }
            let idle = alive.filter { !$0.busy && now.timeIntervalSince($0.lastUsed) > idleTimeout }.sorted { $0.lastUsed < $1.lastUsed }
            actions += (gone + idle.prefix(max(0, alive.count - keep))).map { .retire(instance: $0.key) }
        }
        return actions
    }

    /// What this replica gives when another asks for room on hardware `sku`: its least recently
    /// used instance on a fleet worker offering it that has been idle at least `minIdle`
    /// seconds and is not kept for a deployment's minimum. One at a time: the asker asks again.
    static func yieldRoom(_ view: FleetView, sku: String, now: Date, minIdle: TimeInterval) -> [SchedulerAction] {
        let decider = Decider(view: view)
        // Only where the asker may place: another replica's embedded worker is not its to use.
        let offering = Set(view.offers.filter { $0.shared && $0.skus.contains(sku) }.map(\.location))
        let idle = view.instances.filter { instance in
            !instance.busy && offering.contains(instance.location) && now.timeIntervalSince(instance.lastUsed) >= minIdle
                && decider.spare(instance)
        }
        return idle.min { $0.lastUsed < $1.lastUsed }.map { [.retire(instance: $0.key)] } ?? []
    }

    private mutating func decide(_ version: String) {
        guard let state = view.versions[version] else { return }
        let sku = state.sku
        // The model or deployment now asks for other hardware: idle instances on the old go.
        for stale in view.instances where stale.version == version && !stale.busy && stale.sku != sku { retire(stale.key) }
        // Placement counts free slots: an instance with `concurrency: N` takes N at once.
        while let job = view.versions[version]?.queue.first,
              let index = view.instances.firstIndex(where: { $0.version == version && $0.hasRoom && $0.alive && $0.sku == sku }) {
            view.versions[version]?.queue.removeFirst()
            view.instances[index].running += 1
            actions.append(.start(prediction: job.id, version: version, instance: view.instances[index].key))
        }
        let queue = view.versions[version]?.queue ?? []
        let mine = view.instances.filter { $0.version == version }.count + state.booting
        let limit = state.bounds?.max ?? view.maxInstancesPerVersion
        // Each instance being booted will take `concurrency` of the waiting ones.
        let taken = state.booting * max(1, state.concurrency)
        let needWork = queue.count + state.waitingBeyond > taken
        // Deployment minimums are kept by the leader only, so replicas do not each keep them.
        let needWarm = view.isLeader && mine < (state.bounds?.min ?? 0)
        guard needWork || needWarm, mine < limit else { return }
        // The new instance is for the account of the first job it will take, or the deployment's.
        // Work is held to the per-account limit; warm minimums were held to theirs when the
        // deployment was made.
        guard let account = needWork ? queue.dropFirst(taken).first?.account : state.bounds?.account else { return }
        if needWork && instanceCount(of: account) >= view.perAccountLimit {
            // At its limit, an account's waiting work may replace its own idle instance of
            // another version (never someone else's).
            guard evictOwnIdle(except: version, of: account) else { return }
        }
        var target = place(version, sku: sku)
        if target == nil {
            guard Placement.offered(sku, by: places(for: nil)) else {
                if needWork && view.offers.isEmpty && view.sharedQueue {
                    // Replicas share the queue: one with a worker takes it.
                    actions.append(.handBack(version: version))
                    view.versions[version]?.queue = []
                } else if needWork {
                    actions.append(.waitForHardware(version: version, sku: sku))
                }
                return
            }
            // Everything that offers the hardware is full: waiting work (never a warm minimum)
            // makes room by stopping an idle instance of another version, so a waiting account
            // is never starved.
            guard needWork, evictIdle(except: version, for: account, sku: sku) else {
                // Scaled out, the room may be held by another replica's idle instances, which
                // this replica cannot use or stop: it asks for one.
                if needWork && view.sharedQueue, let oldest = queue.first, view.now.timeIntervalSince(oldest.queuedAt) >= view.roomAfter {
                    actions.append(.wantRoom(sku: sku))
                }
                return
            }
            target = place(version, sku: sku)
        }
        guard let target else { return }
        view.versions[version]?.booting += 1
        view.bootingFor[account, default: 0] += 1
        view.bootingAt[target, default: 0] += 1
        if sku.hasPrefix("gpu-") { view.gpusBooting[target, default: []].append(sku) }
        actions.append(.boot(version: version, account: account, at: target))
    }

    /// Instances held or being booted for `account`.
    func instanceCount(of account: String) -> Int {
        view.instances.filter { $0.account == account }.count + (view.bootingFor[account] ?? 0)
    }

    /// Every place with its load and whether it runs `version` already.
    package func places(for version: String?) -> [Place] {
        view.offers.map { offer in
            let load = view.instances.filter { $0.location == offer.location }.count + (view.bootingAt[offer.location] ?? 0) + offer.elsewhere
            let warm = version.map { version in view.instances.contains { $0.version == version && $0.location == offer.location } } ?? false
            return Place(location: offer.location, skus: offer.skus, cached: offer.cached, capacity: offer.capacity, load: load, warm: warm)
        }
    }

    /// Where a new instance goes (``Placement``); nil when every place offering `sku` is full.
    /// A GPU instance goes only where one of its GPUs of that model is free, on every
    /// worker of the fleet alike.
    package func place(_ version: String, sku: String) -> InstanceLocation? {
        let candidates = places(for: version).filter { place in
            !sku.hasPrefix("gpu-") || view.offers.first { $0.location == place.location }.map { freeGPUs(sku, at: $0) > 0 } == true
        }
        return Placement.choose(version: version, sku: sku, among: candidates)
    }

    /// GPUs of model `sku` free at a place: its GPUs less those its instances and the boots in
    /// flight hold, and, on a worker other replicas place on too, less one for each instance
    /// they placed there (this replica cannot see which GPUs those hold).
    func freeGPUs(_ sku: String, at offer: FleetView.Offer) -> Int {
        let held = view.instances.filter { $0.location == offer.location }.flatMap(\.gpus) + (view.gpusBooting[offer.location] ?? [])
        return offer.gpus.filter { $0 == sku }.count - held.filter { $0 == sku }.count - offer.elsewhere
    }

    /// Stops the least recently used idle instance of another version to make room for work of
    /// `account`. Instances above their deployment's minimum go first; then an idle instance
    /// kept only for another account's deployment minimum gives way (it is booted again when
    /// capacity frees). False when there is none.
    private mutating func evictIdle(except version: String, for account: String, sku: String) -> Bool {
        let offering = Set(view.offers.filter { $0.skus.contains(sku) }.map(\.location))
        let idle = view.instances.filter { !$0.busy && $0.version != version && offering.contains($0.location) }
        let aboveMinimum = idle.filter { spare($0) }
        let warmForOthers = idle.filter { view.versions[$0.version]?.bounds.map { $0.account != account } ?? false }
        guard let victim = (aboveMinimum.isEmpty ? warmForOthers : aboveMinimum).min(by: { $0.lastUsed < $1.lastUsed }) else { return false }
        retire(victim.key)
        return true
    }

    /// Stops `account`'s least recently used idle instance of another version that is not kept
    /// for a deployment's minimum; false when there is none.
    private mutating func evictOwnIdle(except version: String, of account: String) -> Bool {
        let idle = view.instances.filter { !$0.busy && $0.version != version && $0.account == account && spare($0) }
        guard let victim = idle.min(by: { $0.lastUsed < $1.lastUsed }) else { return false }
        retire(victim.key)
        return true
    }

    /// Whether the instance's version has more instances than its deployment keeps warm.
    private func spare(_ instance: FleetView.Instance) -> Bool {
        view.instances.filter { $0.version == instance.version }.count > (view.versions[instance.version]?.bounds?.min ?? 0)
    }

    private mutating func retire(_ key: Int) {
        view.instances.removeAll { $0.key == key }
        actions.append(.retire(instance: key))
    }
}
