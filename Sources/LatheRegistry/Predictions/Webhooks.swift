import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheSpec
import SQLKit

/// Webhook delivery with Standard Webhooks signatures (Replicate's scheme): `webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`,
/// keyed by the account's `whsec_` secret. `output` and `logs` events are throttled to one per
/// 500 ms; the `completed` event is retried with backoff.
public actor Webhooks {
    private let sql: any SQLDatabase
    private var lastSent: [String: Date] = [:]
    /// Waits between attempts for the completed event.
    var backoff: [TimeInterval] = [1, 2, 4, 8, 16]

    public init(database: RegistryDatabase) {
        sql = database.sql
    }

    /// The account's signing secret, created on first use.
    public func secret(for accountID: String) async throws -> String {
        struct Row: Decodable { var secret: String }
        if let row = try await sql.raw("SELECT secret FROM webhook_secrets WHERE account_id = \(bind: accountID)").first(decoding: Row.self) {
            return row.secret
        }
        var generator = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let secret = "whsec_" + key.base64EncodedString()
        try await sql.raw("INSERT INTO webhook_secrets (account_id, secret) VALUES (\(bind: accountID), \(bind: secret)) ON CONFLICT (account_id) DO NOTHING").run()
        return try await self.secret(for: accountID)
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
        Task.detached {
            for attempt in 0..<attempts {
                if await Self.post(data, to: url, id: messageID, secret: secret) { return }
                if attempt < waits.count { try? await Task.sleep(nanoseconds: UInt64(waits[attempt] * 1_000_000_000)) }
            }
        }
    }

    /// One signed POST; true on a 2xx answer.
    static func post(_ body: Data, to url: URL, id: String, secret: String) async -> Bool {
        let timestamp = String(Int(Date().timeIntervalSince1970))
        var request = URLRequest(url: url, timeoutInterval: 10)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(id, forHTTPHeaderField: "webhook-id")
        request.setValue(timestamp, forHTTPHeaderField: "webhook-timestamp")
        request.setValue("v1," + signature(id: id, timestamp: timestamp, body: body, secret: secret), forHTTPHeaderField: "webhook-signature")
        guard let (_, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return false }
        return (200..<300).contains(http.statusCode)
    }

    static func signature(id: String, timestamp: String, body: Data, secret: String) -> String {
        let key = Data(base64Encoded: String(secret.split(separator: "_").last ?? "")) ?? Data()
        var message = Data("\(id).\(timestamp).".utf8)
        message.append(body)
        return Data(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))).base64EncodedString()
    }
}
