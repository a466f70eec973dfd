import Foundation
import LatheSpec

/// The files of a project, split into code (packed into the code layer) and weights (raw blobs).
public struct ProjectFiles: Sendable {
    /// A weights file with its project-relative path and the spec entry it came from.
    public struct WeightsFile: Sendable, Hashable {
        public var path: String
        public var url: URL
        public var spec: WeightsSpec
    }

    public var code: [CodeLayerWriter.Entry]
    public var weights: [WeightsFile]

    /// Walks `project`, leaving out ignored files and the declared weights.
    public static func scan(_ project: URL, spec: ModelSpec) throws -> ProjectFiles {
        let fileManager = FileManager.default
        let rules = IgnoreRules(project: project)
        var weights: [WeightsFile] = []
        var problems: [Diagnostic] = []
        for entry in spec.weights {
            let url = project.appendingPathComponent(entry.path)
            var isDirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                problems.append(Diagnostic(entry.location, "weights path \"\(entry.path)\" does not exist",
                                           fix: "check the path (relative to lathe.yaml), or create the file first"))
                continue
            }
            if isDirectory.boolValue {
                if entry.sha256 != nil {
                    problems.append(Diagnostic(entry.location, "weights \"\(entry.path)\" is a folder and cannot be pinned",
                                               fix: "pin each file as its own entry, or remove sha256:"))
                }
                for file in try regularFiles(under: url, relativeTo: project) {
                    weights.append(WeightsFile(path: file, url: project.appendingPathComponent(file), spec: entry))
                }
            } else {
                weights.append(WeightsFile(path: entry.path, url: url, spec: entry))
            }
        }
        if !problems.isEmpty { throw Diagnostics(problems) }
        let weightPaths = Set(spec.weights.map(\.path))
        var code: [CodeLayerWriter.Entry] = []
        try walk(project, relative: "", rules: rules, weightPaths: weightPaths, into: &code)
        return ProjectFiles(code: code, weights: weights.sorted { $0.path < $1.path })
    }

    private static func walk(_ directory: URL, relative: String, rules: IgnoreRules, weightPaths: Set<String>,
                             into entries: inout [CodeLayerWriter.Entry]) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        for name in names {
            let path = relative.isEmpty ? name : relative + "/" + name
            if weightPaths.contains(path) { continue }
            let url = directory.appendingPathComponent(name)
            var info = stat()
            guard lstat(url.path, &info) == 0 else { continue }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                if rules.isIgnored(path, isDirectory: true) { continue }
                entries.append(.init(path: path, source: url, isDirectory: true, isExecutable: true))
                try walk(url, relative: path, rules: rules, weightPaths: weightPaths, into: &entries)
            case S_IFREG:
                if rules.isIgnored(path, isDirectory: false) { continue }
                entries.append(.init(path: path, source: url, isDirectory: false, isExecutable: info.st_mode & 0o111 != 0))
            default:
                if rules.isIgnored(path, isDirectory: false) { continue }
                let kind = info.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a regular file"
                throw Diagnostics([Diagnostic(nil, "\(path) is \(kind); archives hold regular files and folders only",
                                              fix: "replace it with a copy, or add it to .latheignore")])
            }
        }
    }

    private static func regularFiles(under directory: URL, relativeTo project: URL) throws -> [String] {
        var result: [String] = []
        let base = project.standardizedFileURL.path
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        for case let url as URL in enumerator {
            if try url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true {
                result.append(String(url.standardizedFileURL.path.dropFirst(base.count + 1)))
            }
        }
        return result.sorted()
    }
}
