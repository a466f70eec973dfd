import Foundation
@testable import LatheCore
@testable import LatheStore
import Testing

/// The decider's rules, one by one, on views built by hand (no scheduler, no processes).
@Suite("deciding what runs where")
struct DeciderTests {
    typealias Instance = FleetView.Instance

    func waiting(_ ids: [String], account: String = "alice") -> [FleetView.Waiting] {
        ids.enumerated().map { FleetView.Waiting(id: $0.element, account: account, createdAt: "2026-12-05T10:00:0\($0.offset)Z") }
    }

    func view(_ versions: [String: FleetView.Version], instances: [Instance] = [], capacity: Int = 4, skus: [String] = ["cpu"],
              perAccount: Int = 3) -> FleetView {
        var view = FleetView()
        view.versions = versions
        view.instances = instances
        view.offers = [FleetView.Offer(location: .worker("embedded"), skus: skus, capacity: capacity)]
        view.perAccountLimit = perAccount
        return view
    }

    func idle(_ key: Int, _ version: String, account: String = "alice", minutesAgo: Double = 1, sku: String = "cpu") -> Instance {
        Instance(key: key, version: version, account: account, location: .worker("embedded"), sku: sku, lastUsed: Date().addingTimeInterval(-60 * minutesAgo))
    }

    @Test("waiting predictions take free slots, then one boot covers what is left")
    func startsThenBoots() {
        let plan = Decider.plan(view(["v": .init(queue: waiting(["a", "b", "c"]), concurrency: 2)],
                                     instances: [Instance(key: 1, version: "v", account: "alice", location: .worker("embedded"), sku: "cpu", slots: 2)]),
                                versions: ["v"])
        #expect(plan == [.start(prediction: "a", version: "v", instance: 1), .start(prediction: "b", version: "v", instance: 1),
                         .boot(version: "v", account: "alice", at: .worker("embedded"))])
        // A crashed instance or one booted for other hardware takes nothing.
        let dead = Instance(key: 1, version: "v", account: "alice", location: .worker("embedded"), sku: "cpu", alive: false)
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"]))], instances: [dead]), versions: ["v"]).first == .boot(version: "v", account: "alice", at: .worker("embedded")))
    }

    @Test("boots in flight count with their concurrency; the version's limit holds")
    func bootsInFlight() {
        // One boot of a concurrency-4 model will take the three waiting: no second boot.
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a", "b", "c"]), concurrency: 4, booting: 1)]), versions: ["v"]).isEmpty)
        // Concurrency 1: a second boot for the second waiting prediction.
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a", "b"]), booting: 1)]), versions: ["v"])
                == [.boot(version: "v", account: "alice", at: .worker("embedded"))])
        // Waiting predictions the view does not list still count: one boot in flight, two listed
        // and five more behind them make a second boot, for the first unlisted-by-boot account.
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"]) + waiting(["b"], account: "bob"), waitingBeyond: 5, booting: 1)]), versions: ["v"])
                == [.boot(version: "v", account: "bob", at: .worker("embedded"))])
        // At the version's limit (2 by default), nothing more boots.
        let busy = (1...2).map { Instance(key: $0, version: "v", account: "alice", location: .worker("embedded"), sku: "cpu", running: 1) }
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"]))], instances: busy), versions: ["v"]).isEmpty)
        // A deployment's maximum replaces it.
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"]), bounds: .init(min: 0, max: 3, account: "alice"))], instances: busy), versions: ["v"])
                == [.boot(version: "v", account: "alice", at: .worker("embedded"))])
    }

    @Test("an idle instance on hardware its version no longer asks for goes; a busy one stays")
    func staleHardware() {
        let old = idle(1, "v", sku: "cpu"), working = Instance(key: 2, version: "v", account: "alice", location: .worker("embedded"), sku: "cpu", running: 1)
        let plan = Decider.plan(view(["v": .init(sku: "cpu-large")], instances: [old, working], skus: ["cpu", "cpu-large"]), versions: ["v"])
        #expect(plan == [.retire(instance: 1)])
    }

    @Test("at its limit, an account's work replaces its own idle instance of another version, never someone else's")
    func perAccountLimit() {
        let mine = idle(1, "old"), theirs = idle(2, "other", account: "bob", minutesAgo: 10)
        let plan = Decider.plan(view(["v": .init(queue: waiting(["a"])), "old": .init(), "other": .init()], instances: [mine, theirs], perAccount: 1),
                                versions: ["v"])
        #expect(plan == [.retire(instance: 1), .boot(version: "v", account: "alice", at: .worker("embedded"))])
        // Without an idle instance of its own, it waits.
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"])), "other": .init()], instances: [idle(1, "v2"), theirs].map {
            var instance = $0; instance.running = instance.key == 1 ? 1 : 0; return instance
        }, perAccount: 1), versions: ["v"]).isEmpty)
    }

    @Test("a full fleet makes room by stopping the least recently used idle instance, spares before deployment minimums")
    func fullFleet() {
        let kept = idle(1, "deployed", account: "bob", minutesAgo: 30), spare = idle(2, "spare", account: "bob", minutesAgo: 5)
        var versions: [String: FleetView.Version] = ["v": .init(queue: waiting(["a"])), "spare": .init(),
                                                     "deployed": .init(bounds: .init(min: 1, max: 1, account: "bob"))]
        #expect(Decider.plan(view(versions, instances: [kept, spare], capacity: 2), versions: ["v"])
                == [.retire(instance: 2), .boot(version: "v", account: "alice", at: .worker("embedded"))])
        // With no spare left, another account's deployment minimum gives way to waiting work.
        #expect(Decider.plan(view(versions, instances: [kept, Instance(key: 2, version: "spare", account: "bob", location: .worker("embedded"), sku: "cpu", running: 1)],
                                  capacity: 2), versions: ["v"])
                == [.retire(instance: 1), .boot(version: "v", account: "alice", at: .worker("embedded"))])
        // A warm minimum alone never evicts anything.
        versions["v"] = .init(bounds: .init(min: 1, max: 1, account: "alice"))
        #expect(Decider.plan(view(versions, instances: [kept, spare], capacity: 2), versions: ["v"]).isEmpty)
    }

    @Test("hardware nobody offers: the predictions hear so, or go back to the shared queue from a replica without workers")
    func noHardware() {
        #expect(Decider.plan(view(["v": .init(queue: waiting(["a"]), sku: "gpu-a100")]), versions: ["v"]) == [.waitForHardware(version: "v", sku: "gpu-a100")])
        var apiOnly = view(["v": .init(queue: waiting(["a"]))])
        apiOnly.offers = []
        #expect(Decider.plan(apiOnly, versions: ["v"]) == [.waitForHardware(version: "v", sku: "cpu")])
        apiOnly.sharedQueue = true
        #expect(Decider.plan(apiOnly, versions: ["v"]) == [.handBack(version: "v")])
    }

    @Test("deployment minimums are kept by the leader only")
    func warmMinimums() {
        var deployed = view(["v": .init(bounds: .init(min: 2, max: 2, account: "org"))])
        #expect(Decider.plan(deployed, versions: ["v"]) == [.boot(version: "v", account: "org", at: .worker("embedded"))])
        deployed.versions["v"]?.booting = 2
        #expect(Decider.plan(deployed, versions: ["v"]).isEmpty)
        deployed.versions["v"]?.booting = 0
        deployed.isLeader = false
        #expect(Decider.plan(deployed, versions: ["v"]).isEmpty)
    }

    @Test("a GPU instance goes only where one of its GPUs is free, on the embedded worker and a fleet worker alike; one plan never gives a GPU twice")
    func gpusAreCounted() {
        var gpus = view(["v": .init(queue: waiting(["a"]), sku: "gpu-a100"), "w": .init(queue: waiting(["b"], account: "bob"), sku: "gpu-a100")],
                        skus: ["cpu", "gpu-a100"])
        gpus.offers[0].gpus = ["gpu-a100"]
        // The second version finds the GPU taken: the hardware is offered but full, so it waits.
        #expect(Decider.plan(gpus, versions: ["v", "w"]) == [.boot(version: "v", account: "alice", at: .worker("embedded"))])
        // A remote worker with the GPU takes the second.
        gpus.offers.append(FleetView.Offer(location: .worker("w1"), skus: ["cpu", "gpu-a100"], capacity: 4, gpus: ["gpu-a100"]))
        #expect(Decider.plan(gpus, versions: ["v", "w"]) == [.boot(version: "v", account: "alice", at: .worker("embedded")), .boot(version: "w", account: "bob", at: .worker("w1"))])
        // A fleet worker with room for four instances but one A100 takes one A100 instance, not
        // two (its worker would refuse the second boot, and the model would be counted broken).
        gpus.offers.removeFirst()
        #expect(Decider.plan(gpus, versions: ["v", "w"]) == [.boot(version: "v", account: "alice", at: .worker("w1"))])
        // Another replica's instance there may hold it.
        gpus.offers[0].elsewhere = 1
        #expect(Decider.plan(gpus, versions: ["v"]).isEmpty)
        // A boot in flight holds its GPU.
        gpus.offers[0].elsewhere = 0
        gpus.gpusBooting = [.worker("w1"): ["gpu-a100"]]
        #expect(Decider.plan(gpus, versions: ["v"]).isEmpty)
        // Retiring an instance frees its GPU in the same plan.
        gpus.gpusBooting = [:]
        gpus.offers = [FleetView.Offer(location: .worker("embedded"), skus: ["cpu", "gpu-a100"], capacity: 1, gpus: ["gpu-a100"])]
        gpus.versions["old"] = .init(sku: "gpu-a100")
        var holder = idle(7, "old", account: "bob", sku: "gpu-a100")
        holder.gpus = ["gpu-a100"]
        gpus.instances = [holder]
        #expect(Decider.plan(gpus, versions: ["v"]) == [.retire(instance: 7), .boot(version: "v", account: "alice", at: .worker("embedded"))])
    }

    @Test("other replicas' instances on a worker count against its capacity")
    func sharedCapacity() {
        var shared = view(["v": .init(queue: waiting(["a"]))])
        shared.offers = [FleetView.Offer(location: .worker("w1"), skus: ["cpu"], capacity: 2, elsewhere: 2),
                         FleetView.Offer(location: .worker("w2"), skus: ["cpu"], capacity: 2, elsewhere: 1)]
        #expect(Decider.plan(shared, versions: ["v"]) == [.boot(version: "v", account: "alice", at: .worker("w2"))])
    }

    @Test("freed capacity goes first to the account holding fewest instances, then to the oldest waiting")
    func fairness() {
        var fair = view(["busy": .init(queue: waiting(["a"], account: "alice")), "new": .init(queue: [FleetView.Waiting(id: "b", account: "bob", createdAt: "2026-12-05T11:00:00Z")]),
                         "old": .init(queue: [FleetView.Waiting(id: "c", account: "carol", createdAt: "2026-12-05T09:00:00Z")])],
                        instances: [Instance(key: 1, version: "x", account: "alice", location: .worker("embedded"), sku: "cpu", running: 1)])
        #expect(Decider.fairOrder(fair) == ["old", "new", "busy"])
        fair.offers[0].capacity = 2
        // Room for one more: carol's oldest work gets it.
        #expect(Decider.plan(fair, versions: Decider.fairOrder(fair)) == [.boot(version: "old", account: "carol", at: .worker("embedded"))])
    }

    @Test("crashed instances go at once; idle ones past the timeout go beyond the deployment's minimum, least recently used first")
    func scaleDown() {
        let now = Date()
        var dead = idle(1, "v")
        dead.alive = false
        let older = idle(2, "v", minutesAgo: 20), newer = idle(3, "v", minutesAgo: 10), fresh = idle(4, "v", minutesAgo: 0.1)
        let scaled = view(["v": .init(bounds: .init(min: 1, max: 4, account: "alice"))], instances: [dead, newer, older, fresh])
        #expect(Decider.scaleDown(scaled, now: now, idleTimeout: 300) == [.retire(instance: 1), .retire(instance: 2), .retire(instance: 3)])
        // Minimum 3 of the three alive: only the crashed one goes.
        var kept = scaled
        kept.versions["v"]?.bounds?.min = 3
        #expect(Decider.scaleDown(kept, now: now, idleTimeout: 300) == [.retire(instance: 1)])
    }

    @Test("scaled out, a full worker held by other replicas: this replica asks for room, and they give their least recently used idle instance")
    func roomAcrossReplicas() {
        var full = view(["v": .init(queue: waiting(["a"]))])
        full.offers = [FleetView.Offer(location: .worker("w1"), skus: ["cpu"], capacity: 4, elsewhere: 4)]
        // One replica alone (SQLite) has nobody to ask.
        #expect(Decider.plan(full, versions: ["v"]).isEmpty)
        full.sharedQueue = true
        // A wait shorter than `roomAfter` is a busy fleet: nobody is asked yet.
        full.versions["v"]?.queue[0].queuedAt = full.now.addingTimeInterval(-0.5)
        #expect(Decider.plan(full, versions: ["v"]).isEmpty)
        full.versions["v"]?.queue[0].queuedAt = full.now.addingTimeInterval(-1.5)
        #expect(Decider.plan(full, versions: ["v"]) == [.wantRoom(sku: "cpu")])

        // The replicas asked: each gives one instance idle long enough, on a worker offering the SKU.
        let now = Date()
        func held(_ key: Int, _ location: InstanceLocation, idleFor seconds: TimeInterval, running: Int = 0, version: String = "v") -> Instance {
            Instance(key: key, version: version, account: "bob", location: location, sku: "cpu", running: running, lastUsed: now.addingTimeInterval(-seconds))
        }
        var holder = view(["v": .init(), "kept": .init(bounds: .init(min: 1, max: 1, account: "bob"))])
        holder.offers = [FleetView.Offer(location: .worker("embedded"), skus: ["cpu"], capacity: 4, shared: false),
                         FleetView.Offer(location: .worker("w1"), skus: ["cpu"], capacity: 4),
                         FleetView.Offer(location: .worker("gpu"), skus: ["gpu-a100"], capacity: 1)]
        holder.instances = [held(1, .worker("w1"), idleFor: 5), held(2, .worker("w1"), idleFor: 30), held(3, .worker("w1"), idleFor: 60, running: 1),
                            held(4, .worker("w1"), idleFor: 0.2), held(5, .worker("embedded"), idleFor: 90), held(6, .worker("gpu"), idleFor: 90),
                            held(7, .worker("w1"), idleFor: 120, version: "kept")]
        #expect(Decider.yieldRoom(holder, sku: "cpu", now: now, minIdle: 1) == [.retire(instance: 2)])
        // Nothing idle long enough (or only kept for a minimum, busy, embedded, or elsewhere): nothing.
        holder.instances = [held(3, .worker("w1"), idleFor: 60, running: 1), held(4, .worker("w1"), idleFor: 0.2), held(5, .worker("embedded"), idleFor: 90),
                            held(7, .worker("w1"), idleFor: 120, version: "kept")]
        #expect(Decider.yieldRoom(holder, sku: "cpu", now: now, minIdle: 1).isEmpty)
    }
}
