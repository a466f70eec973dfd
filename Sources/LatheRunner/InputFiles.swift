import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheSpec

/// Puts file inputs where a model can read them, always done by Lathe and never by the sandboxed
/// model: data URIs are decoded, http(s) URLs downloaded, and references the caller knows (local
/// paths for `lathe predict`, the registry's own file URLs) copied. Each file gets its own folder
/// under `directory`; the input then holds its path.
public enum InputFiles {
    public static let maxBytes = 100 << 20

    /// A file the caller found for a reference: where it is and the name to give the copy.
    public typealias Known = (source: URL, name: String)

    /// Localizes every file (and array-of-file) input. `known` resolves references other than
    /// data URIs and http(s) URLs, or throws a ``FieldError`` when it cannot.
    public static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL,
                                known: (_ reference: String, _ field: String) async throws -> Known?) async throws -> [String: JSONValue] {
        var result = values
        for input in spec.inputs where input.type == .file || (input.type == .array && input.items == .file) {
            guard let value = values[input.name], value != .null else { continue }
            if case .array(let items) = value {
                var localized: [JSONValue] = []
                for (index, item) in items.enumerated() {
                    localized.append(.string(try await fetch(item.stringValue ?? "", field: "\(input.name)[\(index)]", directory: directory, known: known)))
                }
                result[input.name] = .array(localized)
            } else {
                result[input.name] = .string(try await fetch(value.stringValue ?? "", field: input.name, directory: directory, known: known))
            }
        }
        return result
    }

    private static func fetch(_ reference: String, field: String, directory: URL,
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
        let (temporary, response) = try await URLSession.shared.download(from: url)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw FieldError(field: field, message: "downloading \(reference) failed: the server answered HTTP \(status); give a URL that serves the file")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: temporary.path)[.size] as? Int) ?? 0
        guard size <= maxBytes else { throw FieldError(field: field, message: "\(reference) is larger than \(maxBytes >> 20) MB") }
        let target = folder.appendingPathComponent(url.lastPathComponent.isEmpty ? "input" : url.lastPathComponent)
        try FileManager.default.moveItem(at: temporary, to: target)
        return target.path
    }
}
