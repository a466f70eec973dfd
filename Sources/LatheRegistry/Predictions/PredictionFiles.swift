import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheSpec

/// File inputs are fetched by the server (never by the sandboxed model): data URIs are decoded,
/// this registry's own file URLs are read from disk, other http(s) URLs are downloaded, each
/// with a size limit.
enum InputFiles {
    static let maxBytes = 100 << 20

    static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL, owner: String, registry: Registry) async throws -> [String: JSONValue] {
        var result = values
        for input in spec.inputs where input.type == .file || (input.type == .array && input.items == .file) {
            guard let value = values[input.name], value != .null else { continue }
            if case .array(let items) = value {
                var local: [JSONValue] = []
                for item in items { local.append(.string(try await fetch(item.stringValue ?? "", field: input.name, directory: directory, owner: owner, registry: registry))) }
                result[input.name] = .array(local)
            } else {
                result[input.name] = .string(try await fetch(value.stringValue ?? "", field: input.name, directory: directory, owner: owner, registry: registry))
            }
        }
        return result
    }

    private static func fetch(_ reference: String, field: String, directory: URL, owner: String, registry: Registry) async throws -> String {
        let folder = directory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        if reference.hasPrefix("data:") {
            guard let comma = reference.firstIndex(of: ","), reference[..<comma].hasSuffix(";base64"),
                  let data = Data(base64Encoded: String(reference[reference.index(after: comma)...])), data.count <= maxBytes else {
                throw FieldError(field: field, message: "is not a valid base64 data URI of at most 100 MB")
            }
            let type = String(reference.dropFirst(5).prefix { $0 != ";" })
            let target = folder.appendingPathComponent("input" + MediaTypes.fileExtension(for: type))
            try data.write(to: target)
            return target.path
        }
        // A file uploaded through /v1/files by the same user.
        let uploads = registry.baseURL + "/v1/files/"
        if reference.hasPrefix(uploads) {
            let id = String(reference.dropFirst(uploads.count))
            guard let file = try await FileRoutes.file(id, owner: owner, sql: registry.database.sql) else {
                throw FieldError(field: field, message: "file \(id) does not exist or is not yours")
            }
            let target = folder.appendingPathComponent((file.name as NSString).lastPathComponent.isEmpty ? "input" : (file.name as NSString).lastPathComponent)
            try FileManager.default.copyItem(at: FileRoutes.path(file.id, registry: registry), to: target)
            return target.path
        }
        if let local = OutputFiles.localPath(for: reference, registry: registry) {
            let target = folder.appendingPathComponent(local.lastPathComponent)
            try FileManager.default.copyItem(at: local, to: target)
            return target.path
        }
        guard let url = URL(string: reference), url.scheme == "http" || url.scheme == "https" else {
            throw FieldError(field: field, message: "must be an http(s) URL or a data URI")
        }
        let (temporary, response) = try await URLSession.shared.download(from: url)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw FieldError(field: field, message: "downloading \(reference) failed") }
        let size = (try? FileManager.default.attributesOfItem(atPath: temporary.path)[.size] as? Int) ?? 0
        guard size <= maxBytes else { throw FieldError(field: field, message: "\(reference) is larger than 100 MB") }
        let target = folder.appendingPathComponent(url.lastPathComponent.isEmpty ? "input" : url.lastPathComponent)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target.path
    }
}

/// Output files leave the instance for `DATA/outputs/<random token>/<name>` and are served at
/// `/files/<token>/<name>`: unguessable URLs, no token needed (as Replicate's delivery URLs).
enum OutputFiles {
    static func mediaType(_ name: String) -> String { MediaTypes.type(forFileName: name) }

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
