import Foundation
import LatheSpec

/// Puts file inputs where a model can read them, always done by Lathe and never by the sandboxed
/// model: data URIs are decoded, http(s) URLs downloaded, and references the caller knows (local
/// paths for `lathe predict`, the registry's own file URLs) copied. Each file gets its own folder
/// under `directory`; the input then holds its path.
public enum InputFiles {
    public static let maxBytes = 100 << 20

    /// A file the caller found for a reference: where it is and the name to give the copy.
    public typealias Known = (source: URL, name: String)

    /// Whether `values` hold a file input to localize (most predictions' inputs do not).
    public static func anyToLocalize(_ values: [String: JSONValue], spec: ModelSpec) -> Bool {
        spec.inputs.contains { input in
            (input.type == .file || (input.type == .array && input.items == .file)) && (values[input.name].map { $0 != .null } ?? false)
        }
    }

    /// Localizes every file (and array-of-file) input. `known` resolves references other than
    /// data URIs and http(s) URLs, or throws a ``FieldError`` when it cannot. URLs are fetched
    /// through `outbound` (its egress policy), all of them within `timeout` seconds; cancelling
    /// the calling task stops a download.
    public static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL, outbound: OutboundHTTP, timeout: TimeInterval,
                                known: (_ reference: String, _ field: String) async throws -> Known?) async throws -> [String: JSONValue] {
        let deadline = Date().addingTimeInterval(timeout)
        var result = values
        for input in spec.inputs where input.type == .file || (input.type == .array && input.items == .file) {
            guard let value = values[input.name], value != .null else { continue }
            if case .array(let items) = value {
                var localized: [JSONValue] = []
                for (index, item) in items.enumerated() {
                    localized.append(.string(try await fetch(item.stringValue ?? "", field: "\(input.name)[\(index)]", directory: directory,
                                                                    outbound: outbound, deadline: deadline, known: known)))
                }
                result[input.name] = .array(localized)
            } else {
                result[input.name] = .string(try await fetch(value.stringValue ?? "", field: input.name, directory: directory,
                                                                 outbound: outbound, deadline: deadline, known: known))
            }
        }
        return result
    }

    private static func fetch(_ reference: String, field: String, directory: URL, outbound: OutboundHTTP, deadline: Date,
                              known: (String, String) async throws -> Known?) async throws -> String {
        let folder = directory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        if reference.hasPrefix("data:") {
            guard let comma = reference.firstIndex(of: ","), reference[..<comma].hasSuffix(";base64"),
                  let data = Data(base64Encoded: String(reference[reference.index(after: comma)...])), data.count <= maxBytes else {
                throw FieldError(field: field, message: "is not a valid base64 data URI of at most \(maxBytes >> 20) MB")
            }
            let type = String(reference.dropFirst(5).prefix { $0 != ";" })
            let target = folder.appendingPathComponent("input" + MediaTypes.fileExtension(for: type))
            try data.write(to: target)
            return target.path
        }
        if let (source, name) = try await known(reference, field) {
            let target = folder.appendingPathComponent((name as NSString).lastPathComponent.isEmpty ? "input" : (name as NSString).lastPathComponent)
            try FileManager.default.copyItem(at: source, to: target)
            return target.path
        }
        guard let url = URL(string: reference), url.scheme == "http" || url.scheme == "https" else {
            throw FieldError(field: field, message: "must be an http(s) URL or a data URI")
        }
        let name = url.lastPathComponent.isEmpty || url.lastPathComponent == "/" ? "input" : url.lastPathComponent
        let target = folder.appendingPathComponent(name)
        do {
            try await outbound.download(url, to: target, maxBytes: Int64(maxBytes), timeout: max(0.001, deadline.timeIntervalSinceNow))
        } catch let error as OutboundError {
            try? FileManager.default.removeItem(at: folder)
            throw FieldError(field: field, message: error.description)
        } catch {
            try? FileManager.default.removeItem(at: folder)
            throw error
        }
        return target.path
    }
}
