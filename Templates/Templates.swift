import Foundation

/// The projects `lathe init` writes, shipped as resources (one folder per template).
///
/// Dot-files are stored without their dot (`latheignore`, `ci/github/`, `ci/gitlab/gitlab-ci.yml`)
/// so that packaging keeps them, and get it back when written.
public enum Templates {
    public static let names = ["python", "streaming"]

    /// The CI services `lathe init --ci` writes a publish pipeline for.
    public enum CI: String, CaseIterable, Sendable {
        case github, gitlab, none

        /// The resource folder under `ci/` and where its files go in the project.
        var source: (folder: String, destination: String)? {
            switch self {
            case .github: ("github", ".github")
            case .gitlab: ("gitlab", "")
            case .none: nil
            }
        }
    }

    /// Copies template `name` into `directory`, then the publish pipeline for `ci`, replacing
    /// placeholders in text files. Returns each written path and whether it was written (false:
    /// it existed and was kept).
    public static func write(_ name: String, to directory: URL, ci: CI = .github, replacing placeholders: [String: String],
                             force: Bool) throws -> [(String, Bool)] {
        guard let root = Bundle.module.url(forResource: name, withExtension: nil) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "template \(name)"])
        }
        var results = try copy(from: root, to: directory, replacing: placeholders, force: force) { relative in
            relative == "latheignore" || relative == "gitignore" ? "." + relative : relative
        }
        if let (folder, destination) = ci.source {
            guard let source = Bundle.module.url(forResource: "ci/\(folder)", withExtension: nil) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "CI template \(folder)"])
            }
            results += try copy(from: source, to: directory, replacing: placeholders, force: force) { relative in
                // gitlab-ci.yml becomes .gitlab-ci.yml at the top; github/ becomes .github/.
                destination.isEmpty ? "." + relative : destination + "/" + relative
            }
        }
        return results
    }

    /// Copies every regular file under `root` to `directory` at the path `rename` gives.
    private static func copy(from root: URL, to directory: URL, replacing placeholders: [String: String], force: Bool,
                             rename: (String) -> String) throws -> [(String, Bool)] {
        let fileManager = FileManager.default
        guard let enumerator = fileManager.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var results: [(String, Bool)] = []
        var sources: [URL] = []
        for case let url as URL in enumerator where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            sources.append(url)
        }
        for source in sources.sorted(by: { $0.path < $1.path }) {
            let relative = rename(String(source.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count + 1)))
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
