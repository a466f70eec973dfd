import Foundation
import LatheArchive
import LatheRunner
import LatheSpec
import LatheStore

/// File inputs on the registry: besides data URIs and http(s) URLs (``InputFiles``), the
/// registry's own URLs are read from its blob store: files the same user uploaded through
/// /v1/files, and output files of earlier predictions.
package enum RegistryInputs {
    package static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL, owner: String, registry: Registry,
                         timeout: TimeInterval) async throws -> [String: JSONValue] {
        try await InputFiles.localize(values, spec: spec, directory: directory, outbound: registry.outbound, timeout: timeout) { reference, field in
            let uploads = registry.baseURL + "/v1/files/"
            if reference.hasPrefix(uploads) {
                let id = String(reference.dropFirst(uploads.count))
                guard let file = try await FileStore(database: registry.database).file(id, owner: owner), let key = BlobKey.file(file.id) else {
                    throw FieldError(field: field, message: "file \(id) does not exist or is not yours")
                }
                return (try await localCopy(key, in: directory, registry: registry), file.name)
            }
            guard let key = OutputFiles.key(for: reference, registry: registry), try await registry.blobs.size(of: key) != nil else { return nil }
            return (try await localCopy(key, in: directory, registry: registry), (key.path as NSString).lastPathComponent)
        }
    }

    /// The object as a local file: the store's own, or a copy fetched into `directory`.
    static func localCopy(_ key: BlobKey, in directory: URL, registry: Registry) async throws -> URL {
        if let local = registry.blobs.localFile(key) { return local }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let target = directory.appendingPathComponent(".fetched-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: target.path, contents: nil), let handle = FileHandle(forWritingAtPath: target.path) else {
            throw CoreError(.failed, "cannot write \(target.path)")
        }
        defer { try? handle.close() }
        try await registry.blobs.read(key, range: nil) { buffer in
            try buffer.withUnsafeReadableBytes { try handle.write(contentsOf: $0) }
        }
        return target
    }
}

/// Output files leave the instance for the blob store at `outputs/<random token>/<name>` and
/// are served at `/files/<token>/<name>`: unguessable URLs, no token needed (as Replicate's
/// delivery URLs).
package enum OutputFiles {
    package static func mediaType(_ name: String) -> String { MediaTypes.type(forFileName: name) }

    /// Replaces `{"$file": NAME}` with the file's public URL, storing the file.
    package static func publish(_ value: JSONValue?, from directory: URL, registry: Registry) async throws -> JSONValue? {
        guard let value else { return nil }
        switch value {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue, BlobKey.isPlainName(name) {
                var bytes = [UInt8](repeating: 0, count: 24)
                for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
                let token = ByteEncoding.hex(bytes)
                guard let key = BlobKey.output(token: token, name: name) else { return .null }
                try await registry.blobs.store(key, from: directory.appendingPathComponent(name))
                let encoded = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name
                return .string("\(registry.baseURL)/files/\(token)/\(encoded)")
            }
            var published: [String: JSONValue] = [:]
            for (field, item) in object { published[field] = try await publish(item, from: directory, registry: registry) ?? .null }
            return .object(published)
        case .array(let items):
            var published: [JSONValue] = []
            for item in items { published.append(try await publish(item, from: directory, registry: registry) ?? .null) }
            return .array(published)
        default:
            return value
        }
    }

    /// The object behind one of this registry's `/files/` URLs. Without a registry, any URL
    /// whose path is `/files/<token>/<name>` (for garbage collection, which must keep every
    /// output a prediction names whatever base URL it was made under).
    package static func key(for url: String, registry: Registry?) -> BlobKey? {
        BlobKey.output(url: url, baseURL: registry?.baseURL)
    }

    /// Every output file a prediction's output names.
    package static func keys(in value: JSONValue?, registry: Registry?) -> [BlobKey] {
        BlobKey.outputs(in: value, baseURL: registry?.baseURL)
    }

    /// Deletes the output files a prediction's output names.
    package static func delete(in value: JSONValue?, registry: Registry) async {
        for key in keys(in: value, registry: registry) { try? await registry.blobs.delete(key) }
    }

    /// For `Prefer: wait` answers: small files of ours inline as data URIs (as Replicate's sync mode).
    package static func inline(_ value: JSONValue, registry: Registry, limit: Int = 1 << 20) async -> JSONValue {
        switch value {
        case .string(let text):
            guard let key = key(for: text, registry: registry), let size = try? await registry.blobs.size(of: key), size <= limit,
                  let data = try? await registry.blobs.data(key, limit: limit) else { return value }
            return .string("data:\(mediaType((key.path as NSString).lastPathComponent));base64,\(data.base64EncodedString())")
        case .array(let items):
            var inlined: [JSONValue] = []
            for item in items { inlined.append(await inline(item, registry: registry, limit: limit)) }
            return .array(inlined)
        case .object(let object):
            var inlined: [String: JSONValue] = [:]
            for (field, item) in object { inlined[field] = await inline(item, registry: registry, limit: limit) }
            return .object(inlined)
        default: return value
        }
    }
}
