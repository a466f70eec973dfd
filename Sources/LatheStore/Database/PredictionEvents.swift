import Foundation
import Logging
import PostgresKit
import PostgresNIO
import ServiceLifecycle
import SQLKit

/// What replicas tell each other about predictions and shared state.
public enum RegistryEvent: Sendable, Equatable {
    /// Predictions wait unclaimed: replicas with room claim them.
    case queued
    /// A prediction reached succeeded, failed or canceled (wakes `Prefer: wait` anywhere).
    case finished(String)
    /// A running prediction's progress was written (wakes streams following it).
    case progress(String)
    /// Someone asked to cancel a prediction (the replica running it stops it).
    case cancel(String)
    /// Accounts, tokens, memberships, models or versions changed: drop cached copies.
    case cachesChanged
    /// Commands wait for a worker: the replica holding its long poll answers it.
    case workerCommands(String)
    /// A worker was counted lost, registered again or left: the replicas with instances there end them.
    case workerLost(String, WorkerLoss)
    /// A worker registered or its cache changed: replicas look again at what waits.
    case fleetChanged
    /// A replica has work for hardware `sku` that every worker offering it is too full to take,
    /// with no idle instance of its own to stop: replicas holding an idle instance there stop one.
    case roomWanted(String)

    package var payload: String {
        switch self {
        case .queued: "queued"
        case .finished(let id): "finished:\(id)"
        case .cancel(let id): "cancel:\(id)"
        case .progress(let id): "progress:\(id)"
        case .cachesChanged: "caches"
        case .workerCommands(let id): "commands:\(id)"
        case .workerLost(let id, let why): "\(why.rawValue):\(id)"
        case .fleetChanged: "fleet"
        case .roomWanted(let sku): "room:\(sku)"
        }
    }

    package init?(payload: String) {
        let parts = payload.split(separator: ":", maxSplits: 1).map(String.init)
        switch (parts.first, parts.count) {
        case ("queued", 1): self = .queued
        case ("caches", 1): self = .cachesChanged
        case ("fleet", 1): self = .fleetChanged
        case ("room", 2): self = .roomWanted(parts[1])
        case ("commands", 2): self = .workerCommands(parts[1])
        case (let kind?, 2) where WorkerLoss(rawValue: kind) != nil: self = .workerLost(parts[1], WorkerLoss(rawValue: kind)!)
        case ("finished", 2): self = .finished(parts[1])
        case ("cancel", 2): self = .cancel(parts[1])
        case ("progress", 2): self = .progress(parts[1])
        default: return nil
        }
    }
}

/// The `PredictionEvents` seam (DESIGN §5): events published by any replica reach every
/// replica's handler (this one's included), and one replica at a time is the leader that runs
/// the singletons (lease expiry, retention, housekeeping, keeping deployments warm). In memory
/// on one machine; PostgreSQL `LISTEN/NOTIFY` and an advisory lock when scaled out.
public protocol PredictionEvents: Sendable {
    func publish(_ event: RegistryEvent) async
    func subscribe(_ handler: @escaping @Sendable (RegistryEvent) async -> Void)
    /// Whether this replica runs the singletons now.
    var isLeader: Bool { get }
}

/// One process: events go straight to the handlers, and it is always the leader.
public final class LocalEvents: PredictionEvents, @unchecked Sendable {
    private let lock = NSLock()
    private var handlers: [@Sendable (RegistryEvent) async -> Void] = []

    public init() {}

    public func publish(_ event: RegistryEvent) async {
        for handler in lock.withLock({ handlers }) { await handler(event) }
    }

    public func subscribe(_ handler: @escaping @Sendable (RegistryEvent) async -> Void) {
        lock.withLock { handlers.append(handler) }
    }

    public var isLeader: Bool { true }
}

/// Replicas on one PostgreSQL: `NOTIFY lathe_events` carries events, one dedicated connection
/// per replica `LISTEN`s and holds (or keeps trying to take) the leader's advisory lock; a lost
/// connection drops the lock, so another replica leads within seconds. Runs as a service.
public final class PostgresEvents: PredictionEvents, Service, @unchecked Sendable {
    package static let channel = "lathe_events"
    static let leaderLock = 7_210_002

    private let configuration: PostgresConnection.Configuration
    private let sql: any SQLDatabase
    private let logger: Logger
    private let lock = NSLock()
    private var handlers: [@Sendable (RegistryEvent) async -> Void] = []
    private var leader = false

    public init(url: String, database: RegistryDatabase, logger: Logger) throws {
        configuration = try SQLPostgresConfiguration(url: url).coreConfiguration
        sql = database.sql
        self.logger = logger
    }

    public var isLeader: Bool { lock.withLock { leader } }

    public func subscribe(_ handler: @escaping @Sendable (RegistryEvent) async -> Void) {
        lock.withLock { handlers.append(handler) }
    }

    public func publish(_ event: RegistryEvent) async {
        do {
            try await sql.raw("SELECT pg_notify(\(bind: Self.channel), \(bind: event.payload))").run()
        } catch {
            // Nobody else hears it; this replica still acts on it.
            logger.warning("could not publish an event", metadata: ["event": "\(event.payload)", "error": "\(RegistryDatabase.reason(error))"])
            await deliver(event)
        }
    }

    private func deliver(_ event: RegistryEvent) async {
        for handler in lock.withLock({ handlers }) { await handler(event) }
    }

    /// Holds (or tries for) the leader's lock and delivers notifications until the connection
    /// fails or the server shuts down.
    private func listen(on connection: PostgresConnection) async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Try for the leader's lock every 2 s; held until this connection ends.
                    while !Task.isCancelled {
                        if !self.isLeader {
                            let rows = try await connection.query("SELECT pg_try_advisory_lock(\(Self.leaderLock)) AS locked", logger: self.logger)
                            for try await (locked) in rows.decode(Bool.self) where locked {
                                self.lock.withLock { self.leader = true }
                                self.logger.info("this replica now runs the singletons (leader)")
                            }
                        }
                        try await Task.sleep(nanoseconds: 2_000_000_000)
                    }
                }
                group.addTask {
                    try await connection.listen(on: Self.channel) { notifications in
                        // Anything published while this replica was not listening is caught up by the
                        // periodic claims and the waits' own checks.
                        await self.deliver(.queued)
                        for try await notification in notifications {
                            if let event = RegistryEvent(payload: notification.payload) { await self.deliver(event) }
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    public func run() async throws {
        var connectionID = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            connectionID += 1
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: connectionID, logger: logger)
                // The connection is closed on every way out (PostgresNIO insists, and a leader's
                // lock is released at once instead of when the socket times out).
                do {
                    try await listen(on: connection)
                } catch {
                    lock.withLock { leader = false }
                    try? await connection.close()
                    throw error
                }
                lock.withLock { leader = false }
                try? await connection.close()
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                logger.warning("lost the PostgreSQL events connection; reconnecting", metadata: ["error": "\(RegistryDatabase.reason(error))"])
                try? await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
    }
}

/// Why a worker is gone from the fleet (the message its predictions end with says so).
public enum WorkerLoss: String, Sendable, Equatable {
    /// Nothing heard from it for the lost-after time.
    case silent = "lost"
    /// It restarted and registered again under the same name and token.
    case replaced
    /// It shut down and said so.
    case left
}
