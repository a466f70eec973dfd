import Crypto
import Foundation
import ServiceLifecycle
import LatheRunner
import LatheSpec
import LatheStore

/// Webhook delivery with Standard Webhooks signatures (Replicate's scheme): `webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`,
/// keyed by the account's `whsec_` secret.
///
/// `start` and `completed` are durable: each is a row (``WebhookDeliveryStore``) written when
/// the event happens, tried at once, and retried by the delivery service of any replica at
/// growing intervals (1 s, 2 s, 4 s … never more than a minute apart) for an hour, under the
/// same `webhook-id`, across restarts and replica deaths. `output` and `logs` are progress,
/// superseded by the next event and by `completed`: throttled to one per 500 ms, tried once,
/// each with its own id.
public actor Webhooks {
    /// When a failed delivery is tried again.
    public struct RetryPolicy: Sendable {
        /// The longest wait between two attempts.
        public var maxWait: TimeInterval = 60
        /// How long after the event attempts go on.
        public var window: TimeInterval = 3600

        public init() {}

        /// The next attempt after `failures` failed ones, or nil once the window has passed.
        public func next(afterFailures failures: Int, createdAt: Date, now: Date = Date()) -> Date? {
            guard now.timeIntervalSince(createdAt) < window else { return nil }
            return now.addingTimeInterval(min(maxWait, pow(2, Double(max(0, failures - 1)))))
        }
    }

    private let secrets: WebhookSecretStore
    private let outbound: OutboundHTTP
    /// The durable deliveries.
    public let store: WebhookDeliveryStore
    /// This replica's name in delivery claims.
    public let replica: String
    public nonisolated let policy: RetryPolicy
    private var lastSent: [String: Date] = [:]
    private var progressCount = 0

    public init(database: RegistryDatabase, outbound: OutboundHTTP, replica: String, policy: RetryPolicy = RetryPolicy()) {
        secrets = WebhookSecretStore(database: database)
        store = WebhookDeliveryStore(database: database)
        self.outbound = outbound
        self.replica = replica
        self.policy = policy
    }

    /// The account's signing secret, created on first use.
    public func secret(for accountID: String) async throws -> String {
        try await secrets.secret(for: accountID)
    }

    /// Sends `event` for a prediction if its filter asks for it: progress once, at most every
    /// 500 ms; `start` and `completed` recorded first, then tried at once.
    func deliver(_ event: String, record: PredictionRecord, body: JSONValue) async {
        guard let url = record.webhook.flatMap(URL.init(string:)) else { return }
        let filter = (record.webhookEventsFilter ?? "output,completed").split(separator: ",").map(String.init)
        guard filter.contains(event), let data = try? JSON.canonical(body) else { return }
        if event == "output" || event == "logs" {
            let key = record.id + event
            if let last = lastSent[key], Date().timeIntervalSince(last) < 0.5 { return }
            lastSent[key] = Date()
            progressCount += 1
            guard let secret = try? await secret(for: record.creatorID) else { return }
            let id = "msg_\(record.id)_\(event)_\(progressCount)", outbound = self.outbound
            Task.detached { _ = await Self.post(data, to: url, id: id, secret: secret, outbound: outbound) }
            return
        }
        if event == "completed" {
            lastSent.removeValue(forKey: record.id + "output")
            lastSent.removeValue(forKey: record.id + "logs")
        }
        let now = Timestamp.now()
        let delivery = WebhookDelivery(id: "msg_\(record.id)_\(event)", predictionID: record.id, event: event, url: url.absoluteString,
                                       accountID: record.creatorID, body: String(decoding: data, as: UTF8.self), status: .pending,
                                       attempts: 0, nextAt: now, createdAt: now)
        do {
            try await store.enqueue(delivery)
        } catch {
            return  // the database is down: so is the prediction's completion, which is retried
        }
        Task { await self.sendDue(only: delivery.id) }
    }

    /// Claims the deliveries that are due (or only `id`) and makes one attempt at each,
    /// recording the result; returns how many it tried.
    @discardableResult
    nonisolated func sendDue(only id: String? = nil, limit: Int = 16) async -> Int {
        guard let claimed = try? await store.claim(replica: replica, limit: limit, id: id), !claimed.isEmpty else { return 0 }
        await withTaskGroup(of: Void.self) { group in
            for delivery in claimed { group.addTask { await self.attempt(delivery) } }
        }
        return claimed.count
    }

    private nonisolated func attempt(_ delivery: WebhookDelivery) async {
        var problem = "the account's signing secret could not be read"
        if let url = URL(string: delivery.url), let secret = try? await secrets.secret(for: delivery.accountID) {
            problem = await Self.post(Data(delivery.body.utf8), to: url, id: delivery.id, secret: secret, outbound: outbound) ?? ""
            if problem.isEmpty {
                try? await store.delivered(delivery.id, replica: replica)
                return
            }
        }
        let next = policy.next(afterFailures: delivery.attempts + 1, createdAt: Timestamp.date(delivery.createdAt) ?? Date())
        try? await store.failed(delivery.id, replica: replica, error: problem, next: next)
    }

    /// One signed POST through the egress policy; nil on a 2xx answer, else what went wrong.
    package static func post(_ body: Data, to url: URL, id: String, secret: String, outbound: OutboundHTTP) async -> String? {
        let timestamp = String(Int(Date().timeIntervalSince1970))
        let headers = [("Content-Type", "application/json"), ("webhook-id", id), ("webhook-timestamp", timestamp),
                       ("webhook-signature", "v1," + signature(id: id, timestamp: timestamp, body: body, secret: secret))]
        do {
            let status = try await outbound.post(url, body: body, headers: headers, timeout: 10)
            return (200..<300).contains(status) ? nil : "the receiver answered \(status)"
        } catch {
            return "\(error)"
        }
    }

    /// Why `text` cannot be a webhook URL, or nil when it can: http(s), a host, no credentials,
    /// and not a literal address the egress policy refuses (names are checked when delivering).
    package static func problem(with text: String, policy: EgressPolicy) -> String? {
        guard text.utf8.count <= 2048, let components = URLComponents(string: text),
              let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            return "webhook must be an http(s) URL such as https://example.com/hooks/lathe"
        }
        guard let host = components.host, !host.isEmpty else { return "webhook \(text.prefix(100)) has no host; give a URL such as https://example.com/hooks/lathe" }
        guard components.user == nil, components.password == nil else { return "webhook must not carry a user name or password in the URL" }
        if let literal = IPAddress(host), let reason = policy.refusal(literal) {
            return "webhook \(host) is not an address this server posts to (\(reason)); use a public host"
        }
        return nil
    }

    package static func signature(id: String, timestamp: String, body: Data, secret: String) -> String {
        let key = Data(base64Encoded: String(secret.split(separator: "_").last ?? "")) ?? Data()
        var message = Data("\(id).\(timestamp).".utf8)
        message.append(body)
        return Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))).base64EncodedString()
    }
}

/// Sends and retries the durable webhook deliveries, on every replica (claims keep two from
/// sending one delivery): what is due every second, and at once while there is more.
public struct WebhookDeliveryService: Service {
    package let webhooks: Webhooks

    public init(webhooks: Webhooks) {
        self.webhooks = webhooks
    }

    public func run() async throws {
        // This replica's previous process may have died holding claims: they are free now.
        try? await webhooks.store.releaseClaims(heldBy: webhooks.replica)
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if await webhooks.sendDue() == 0 { try await Task.sleep(seconds: 1) }
            }
        }
    }
}
