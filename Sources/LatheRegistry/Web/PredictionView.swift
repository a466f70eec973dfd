import Foundation
import LatheSpec
import LatheStore
import LatheCore

/// What the prediction page shows of a prediction: outputs by type, the input (secrets masked),
/// timings.
enum PredictionView {
    static func decode(_ text: String?) -> JSONValue? {
        text.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }

    /// Output items for the template: images, audio and video inline, other files as download
    /// links, text as text and everything else as pretty-printed JSON. Streamed text shows joined.
    static func outputs(_ record: PredictionRecord, spec: ModelSpec?, registry: Registry) -> [[String: Any]] {
        guard let output = decode(record.output), output != .null else { return [] }
        if spec?.output.concatenate == true, let items = output.arrayValue {
            return [["text": items.map { $0.stringValue ?? FormFields.text($0) }.joined()]]
        }
        if let items = output.arrayValue, items.allSatisfy({ $0.stringValue != nil }) {
            return items.map { item(for: $0, registry: registry) }
        }
        if let rows = output.arrayValue, !rows.isEmpty, rows.count <= 1000, rows.allSatisfy({ $0.objectValue != nil }) {
            return [table(rows.compactMap(\.objectValue), declared: spec?.output.items?.properties, registry: registry)]
        }
        return [item(for: output, registry: registry)]
    }

    /// A list of records (detections, segments, …) as a table: a column per field, the declared
    /// ones first, then any others the rows carry; files as links, nested values as compact JSON.
    static func table(_ rows: [[String: JSONValue]], declared: [String: OutputSpec]?, registry: Registry) -> [String: Any] {
        let declaredNames = (declared?.keys.sorted() ?? []).filter { name in rows.contains { $0[name] != nil } }
        let others = Set(rows.flatMap(\.keys)).subtracting(declaredNames).sorted()
        let columns = Array((declaredNames + others).prefix(64))
        let cells = rows.map { row in
            ["cells": columns.map { column -> [String: Any] in
                guard let value = row[column], value != .null else { return ["text": ""] }
                if let text = value.stringValue, let url = fileURL(text, registry: registry) {
                    return ["url": url, "name": url.split(separator: "/").last.map(String.init) ?? "file"]
                }
                return ["text": value.stringValue ?? compact(value)]
            }]
        }
        return ["table": true, "columns": columns, "rows": cells]
    }

    /// JSON on one line (`[12, 40, 96, 80]`), for a value inside a table cell.
    static func compact(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let numbers = value.arrayValue, numbers.allSatisfy({ $0.doubleValue != nil }) {
            return "[" + numbers.map(compact).joined(separator: ", ") + "]"
        }
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    private static func item(for value: JSONValue, registry: Registry) -> [String: Any] {
        guard let text = value.stringValue else { return ["json": pretty(value)] }
        guard let url = fileURL(text, registry: registry) else { return ["text": text] }
        let name = url.split(separator: "/").last.map(String.init) ?? "output"
        let type = url.hasPrefix("data:") ? String(url.dropFirst(5).prefix { $0 != ";" && $0 != "," }) : OutputFiles.mediaType(name)
        let kind = type.hasPrefix("image/") ? "image" : type.hasPrefix("audio/") ? "audio" : type.hasPrefix("video/") ? "video" : "file"
        return [kind: true, "url": url, "name": name]
    }

    /// Output files are this registry's `/files/…` URLs (or data URIs); any other string is text,
    /// so a model cannot make the page load or link something it names.
    static func fileURL(_ text: String, registry: Registry) -> String? {
        if text.hasPrefix("\(registry.baseURL)/files/") { return "/files/" + text.dropFirst("\(registry.baseURL)/files/".count) }
        if text.hasPrefix("data:image/") || text.hasPrefix("data:audio/") || text.hasPrefix("data:video/") { return text }
        return nil
    }

    /// The first image among a prediction's outputs (explore covers, example thumbnails).
    static func image(in record: PredictionRecord, registry: Registry) -> String? {
        guard !record.dataRemoved, let output = decode(record.output) else { return nil }
        let candidates = output.arrayValue ?? [output]
        for case .string(let text) in candidates {
            if let url = fileURL(text, registry: registry), OutputFiles.mediaType(url).hasPrefix("image/") || url.hasPrefix("data:image/") { return url }
        }
        return nil
    }

    static func inputs(_ record: PredictionRecord, spec: ModelSpec?) -> [[String: Any]] {
        guard let input = decode(record.input)?.objectValue else { return [] }
        let order = spec?.inputs.map(\.name) ?? []
        return input.keys.sorted { (order.firstIndex(of: $0) ?? Int.max, $0) < (order.firstIndex(of: $1) ?? Int.max, $1) }.map { name in
            let secret = spec?.inputs.first { $0.name == name }?.type == .secret
            return ["name": name, "value": secret ? "••••••••" : input[name].map(FormFields.text) ?? ""]
        }
    }

    static func pretty(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    static func seconds(_ value: Double?) -> String? {
        value.map { String(format: "%.2f", $0) }
    }
}
