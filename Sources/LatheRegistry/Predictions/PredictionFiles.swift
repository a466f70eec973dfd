import Foundation
import Hummingbird
import LatheRunner
import LatheSpec

/// File inputs on the registry: besides data URIs and http(s) URLs (``InputFiles``), the
/// registry's own URLs are read from disk: files the same user uploaded through /v1/files, and
/// output files of earlier predictions.
enum RegistryInputs {
    static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL, owner: String, registry: Registry,
                         timeout: TimeInterval) async throws -> [String: JSONValue] {
        try await InputFiles.localize(values, spec: spec, directory: directory, outbound: registry.outbound, timeout: timeout) { reference, field in
            let uploads = registry.baseURL + "/v1/files/"
            if reference.hasPrefix(uploads) {
                let id = String(reference.dropFirst(uploads.count))
                guard let file = try await FileStore(database: registry.database).file(id, owner: owner) else {
                    throw FieldError(field: field, message: "file \(id) does not exist or is not yours")
                }
                return (FileRoutes.path(file.id, registry: registry), file.name)
            }
            return OutputFiles.localPath(for: reference, registry: registry).map { ($0, $0.lastPathComponent) }
        }
    }
}

/// Output files leave the instance for `DATA/outputs/<random token>/<name>` and are served at
/// `/files/<token>/<name>`: unguessable URLs, no token needed (as Replicate's delivery URLs).
enum OutputFiles {
    static func mediaType(_ name: String) -> String { MediaTypes.type(forFileName: name) }

    /// Files a model or a user made are served from the registry's own origin, so they may not
    /// act as pages: a sandboxing CSP (no scripts, no same-origin access), no MIME sniffing.
    static func headers(type: String) -> HTTPFields {
        [.contentType: type, .init("Content-Security-Policy")!: "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'",
         .init("X-Content-Type-Options")!: "nosniff"]
    }

    static func folder(_ registry: Registry) -> URL { registry.blobs.root.appendingPathComponent("outputs") }

    /// Replaces `{"$file": NAME}` with the file's public URL.
    static func publish(_ value: JSONValue?, from directory: URL, registry: Registry) throws -> JSONValue? {
        guard let value else { return nil }
        switch value {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue, (name as NSString).lastPathComponent == name {
                var bytes = [UInt8](repeating: 0, count: 24)
                for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
                let token = bytes.map { String(format: "%02x", $0) }.joined()
                let target = folder(registry).appendingPathComponent(token)
                try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
                try FileManager.default.moveItem(at: directory.appendingPathComponent(name), to: target.appendingPathComponent(name))
                let encoded = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name
                return .string("\(registry.baseURL)/files/\(token)/\(encoded)")
            }
            return .object(try object.mapValues { try publish($0, from: directory, registry: registry) ?? .null })
        case .array(let items):
            return .array(try items.map { try publish($0, from: directory, registry: registry) ?? .null })
        default:
            return value
        }
    }

    /// The file behind one of this registry's `/files/` URLs.
    static func localPath(for url: String, registry: Registry) -> URL? {
        let prefix = registry.baseURL + "/files/"
        guard url.hasPrefix(prefix) else { return nil }
        let parts = url.dropFirst(prefix.count).split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        guard parts.count == 2, parts[0].count == 48, parts[0].allSatisfy(\.isHexDigit), !parts[1].contains("/"), parts[1] != "..", parts[1] != "." else { return nil }
        let path = folder(registry).appendingPathComponent(parts[0]).appendingPathComponent(parts[1])
        return FileManager.default.fileExists(atPath: path.path) ? path : nil
    }

    /// Deletes the output files a prediction's output names.
    static func delete(in value: JSONValue?, registry: Registry) {
        switch value {
        case .string(let text):
            if let path = localPath(for: text, registry: registry) { try? FileManager.default.removeItem(at: path.deletingLastPathComponent()) }
        case .array(let items): items.forEach { delete(in: $0, registry: registry) }
        case .object(let object): object.values.forEach { delete(in: $0, registry: registry) }
        default: break
        }
    }

    /// For `Prefer: wait` answers: small files of ours inline as data URIs (as Replicate's sync mode).
    static func inline(_ value: JSONValue, registry: Registry, limit: Int = 1 << 20) -> JSONValue {
        switch value {
        case .string(let text):
            guard let path = localPath(for: text, registry: registry),
                  let size = try? FileManager.default.attributesOfItem(atPath: path.path)[.size] as? Int, size <= limit,
                  let data = FileManager.default.contents(atPath: path.path) else { return value }
            return .string("data:\(mediaType(path.lastPathComponent));base64,\(data.base64EncodedString())")
        case .array(let items): return .array(items.map { inline($0, registry: registry, limit: limit) })
        case .object(let object): return .object(object.mapValues { inline($0, registry: registry, limit: limit) })
        default: return value
        }
    }
}
