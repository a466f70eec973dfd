import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LatheSpec

/// Puts file inputs where the model can read them: local paths are copied, data URIs decoded and
/// http(s) URLs downloaded, all by Lathe (never by the sandboxed model), into `directory`.
enum FileInputs {
    static let maxBytes = 100 << 20

    static func localize(_ values: [String: JSONValue], spec: ModelSpec, directory: URL) async throws -> [String: JSONValue] {
        var result = values
        for input in spec.inputs where input.type == .file || (input.type == .array && input.items == .file) {
            guard let value = values[input.name], value != .null else { continue }
            if case .array(let items) = value {
                var localized: [JSONValue] = []
                for (index, item) in items.enumerated() {
                    localized.append(.string(try await fetch(item.stringValue ?? "", field: "\(input.name)[\(index)]", directory: directory)))
                }
                result[input.name] = .array(localized)
            } else {
                result[input.name] = .string(try await fetch(value.stringValue ?? "", field: input.name, directory: directory))
            }
        }
        return result
    }

    private static func fetch(_ reference: String, field: String, directory: URL) async throws -> String {
        let folder = directory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        if reference.hasPrefix("data:") {
            guard let comma = reference.firstIndex(of: ","), reference[..<comma].hasSuffix(";base64"),
                  let data = Data(base64Encoded: String(reference[reference.index(after: comma)...])) else {
                throw FieldError(field: field, message: "is not a valid base64 data URI")
            }
            let type = reference.dropFirst(5).prefix { $0 != ";" }
            let target = folder.appendingPathComponent("input" + MediaTypes.fileExtension(for: String(type)))
            try data.write(to: target)
            return target.path
        }
        if reference.hasPrefix("http://") || reference.hasPrefix("https://"), let url = URL(string: reference) {
            let (temporary, response) = try await URLSession.shared.download(from: url)
            guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
                throw FieldError(field: field, message: "downloading \(reference) failed")
            }
            let name = url.lastPathComponent.isEmpty ? "input" : url.lastPathComponent
            let target = folder.appendingPathComponent(name)
            try FileManager.default.moveItem(at: temporary, to: target)
            return target.path
        }
        let source = URL(fileURLWithPath: reference)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: source.path),
              attributes[.type] as? FileAttributeType == .typeRegular else {
            throw FieldError(field: field, message: "file \"\(reference)\" does not exist")
        }
        if let size = attributes[.size] as? Int, size > maxBytes {
            throw FieldError(field: field, message: "file \"\(reference)\" is larger than \(maxBytes >> 20) MB")
        }
        let target = folder.appendingPathComponent(source.lastPathComponent)
        try FileManager.default.copyItem(at: source, to: target)
        return target.path
    }
}
