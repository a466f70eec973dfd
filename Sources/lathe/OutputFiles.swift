import Foundation
import LatheSpec

/// Moves the files a prediction wrote (`{"$file": NAME}` in its output) to where the user wants
/// them and puts their paths in the output instead.
enum OutputFiles {
    static func containsFiles(_ value: JSONValue?) -> Bool {
        switch value {
        case .object(let object): return object["$file"] != nil || object.values.contains { containsFiles($0) }
        case .array(let items): return items.contains { containsFiles($0) }
        default: return false
        }
    }

    /// The output with the files' new paths in it, and those files in output order.
    static func place(_ output: JSONValue?, from directory: URL, destination: String?) throws -> (output: JSONValue?, files: [URL]) {
        guard let output else { return (nil, []) }
        var names: [String] = []
        collect(output, into: &names)
        guard !names.isEmpty else { return (output, []) }
        let fileManager = FileManager.default
        let base = URL(fileURLWithPath: destination ?? FileManager.default.currentDirectoryPath)
        var isDirectory: ObjCBool = false
        let exists = fileManager.fileExists(atPath: base.path, isDirectory: &isDirectory)
        var targets: [String: URL] = [:]
        if names.count == 1 && !(exists && isDirectory.boolValue) {
            targets[names[0]] = base
        } else {
            try fileManager.createDirectory(at: base, withIntermediateDirectories: true)
            for (index, name) in names.enumerated() {
                let ext = (name as NSString).pathExtension
                let fileName = destination == nil ? (names.count == 1 ? "output" : "output.\(index)") + (ext.isEmpty ? "" : ".\(ext)") : name
                targets[name] = base.appendingPathComponent(fileName)
            }
        }
        for (name, target) in targets {
            let source = directory.appendingPathComponent(name)
            guard (name as NSString).lastPathComponent == name, fileManager.fileExists(atPath: source.path) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: name])
            }
            try? fileManager.removeItem(at: target)
            try fileManager.moveItem(at: source, to: target)
        }
        return (replace(output, targets), names.compactMap { targets[$0] })
    }

    private static func collect(_ value: JSONValue, into names: inout [String]) {
        switch value {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue { names.append(name); return }
            for key in object.keys.sorted() { collect(object[key]!, into: &names) }
        case .array(let items): items.forEach { collect($0, into: &names) }
        default: break
        }
    }

    private static func replace(_ value: JSONValue, _ targets: [String: URL]) -> JSONValue {
        switch value {
        case .object(let object):
            if object.count == 1, let name = object["$file"]?.stringValue, let target = targets[name] { return .string(target.path) }
            return .object(object.mapValues { replace($0, targets) })
        case .array(let items): return .array(items.map { replace($0, targets) })
        default: return value
        }
    }
}
