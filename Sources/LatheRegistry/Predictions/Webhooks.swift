import Crypto
import Foundation
import LatheRunner
import LatheSpec

/// Webhook delivery with Standard Webhooks signatures (Replicate's scheme): `webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`,
/// keyed by the account's `whsec_` secret. `output` and `logs` events are throttled to one per
/// 500 ms; the `completed` event is retried with backoff.
public actor Webhooks {
    private let secrets: WebhookSecretStore
    private let outbound: OutboundHTTP
    private var lastSent: [String: Date] = [:]
    /// Waits between attempts for the completed event.
    var backoff: [TimeInterval] = [1, 2, 4, 8, 16]

    public init(database: RegistryDatabase, outbound: OutboundHTTP) {
        secrets = WebhookSecretStore(database: database)
        self.outbound = outbound
    }

    /// The account's signing secret, created on first use.
    public func secret(for accountID: String) async throws -> String {
        try await secrets.secret(for: accountID)
    }

    /// Sends `event` for a prediction if its filter asks for it. Fire and forget for all but
    /// `completed`, which is retried until delivered or out of attempts.
    func deliver(_ event: String, record: PredictionRecord, body: JSONValue) async {
        guard let url = record.webhook.flatMap(URL.init(string:)) else { return }
        let filter = (record.webhookEventsFilter ?? "output,completed").split(separator: ",").map(String.init)
        guard filter.contains(event) else { return }
        if event == "output" || event == "logs" {
            let key = record.id + event
            if let last = lastSent[key], Date().timeIntervalSince(last) < 0.5 { return }
            lastSent[key] = Date()
        }
        if event == "completed" {
            lastSent.removeValue(forKey: record.id + "output")
            lastSent.removeValue(forKey: record.id + "logs")
        }
        guard let secret = try? await secret(for: record.creatorID), let data = try? JSON.canonical(body) else { return }
        let messageID = "msg_\(record.id)_\(event)"
        let attempts = event == "completed" ? backoff.count + 1 : 1
        let waits = backoff
        let outbound = self.outbound
        Task.detached {
            for attempt in 0..<attempts {
                if await Self.post(data, to: url, id: messageID, secret: secret, outbound: outbound) { return }
                if attempt < waits.count { try? await Task.sleep(seconds: waits[attempt]) }
            }
        }
    }

    /// One signed POST through the egress policy; true on a 2xx answer.
    static func post(_ body: Data, to url: URL, id: String, secret: String, outbound: OutboundHTTP) async -> Bool {
        let timestamp = String(Int(Date().timeIntervalSince1970))
        let headers = [("Content-Type", "application/json"), ("webhook-id", id), ("webhook-timestamp", timestamp),
                       ("webhook-signature", "v1," + signature(id: id, timestamp: timestamp, body: body, secret: secret))]
        guard let status = try? await outbound.post(url, body: body, headers: headers, timeout: 10) else { return false }
        return (200..<300).contains(status)
    }

    /// Why `text` cannot be a webhook URL, or nil when it can: http(s), a host, no credentials,
    /// and not a literal address the egress policy refuses (names are checked when delivering).
    static func problem(with text: String, policy: EgressPolicy) -> String? {
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

    static func signature(id: String, timestamp: String, body: Data, secret: String) -> String {
        let key = Data(base64Encoded: String(secret.split(separator: "_").last ?? "")) ?? Data()
        var message = Data("\(id).\(timestamp).".utf8)
        message.append(body)
        return Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))).base64EncodedString()
    }
}
