import Foundation

/// The projects `lathe init` writes, shipped as resources (one folder per template).
///
/// Dot-files are stored without their dot (`latheignore`, `github/`) so that packaging keeps
/// them, and get it back when written.
public enum Templates {
    public static let names = ["python", "streaming"]

    /// Copies template `name` into `directory`, replacing placeholders in text files.
    /// Returns each written path and whether it was written (false: it existed and was kept).
    public static func write(_ name: String, to directory: URL, replacing placeholders: [String: String],
                             force: Bool) throws -> [(String, Bool)] {
        guard let root = Bundle.module.url(forResource: name, withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "template \(name)"])
        }
        let fileManager = FileManager.default
        guard let enumerator = fileManager.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var results: [(String, Bool)] = []
        var sources: [URL] = []
        for case let url as URL in enumerator where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            sources.append(url)
        }
        for source in sources.sorted(by: { $0.path < $1.path }) {
            var relative = String(source.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count + 1))
            if relative == "latheignore" || relative == "gitignore" || relative.hasPrefix("github/") { relative = "." + relative }
            let destination = directory.appendingPathComponent(relative)
            if fileManager.fileExists(atPath: destination.path) && !force {
                results.append((relative, false))
                continue
            }
            try fileManager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            var text = try String(contentsOf: source, encoding: .utf8)
            for (key, value) in placeholders { text = text.replacingOccurrences(of: key, with: value) }
            try Data(text.utf8).write(to: destination)
            results.append((relative, true))
        }
        return results
    }
}
