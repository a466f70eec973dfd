import Foundation

/// What a model's Python requirements may name. By default only packages from the package index,
/// by name with optional extras, version specifiers and environment markers (PEP 508 without a
/// URL). Direct URLs (`pkg @ https://…`), VCS links (`git+…`), local paths and archives, and pip
/// options (`-e`, `-r`, `--index-url`, `--find-links`, …) would fetch and build code from places
/// the operator never chose, so they are refused unless the operator allows them.
public struct RequirementPolicy: Sendable {
    /// Whether direct URL, VCS and local-path requirements are accepted.
    public var allowDirectReferences: Bool

    public init(allowDirectReferences: Bool = false) {
        self.allowDirectReferences = allowDirectReferences
    }

    /// One sentence per refused requirement, naming it and saying what to write instead.
    public func problems(_ requirements: [String]) -> [String] {
        requirements.compactMap { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty, !text.hasPrefix("#") else { return nil }
            let shown = "\"\(text.prefix(120))\""
            if text.hasPrefix("-") {
                return "requirement \(shown) is a pip option; list packages by name only (options such as -e, -r, --index-url and --find-links are not accepted)"
            }
            if let kind = Self.directKind(text) {
                guard !allowDirectReferences else { return nil }
                return "requirement \(shown) is \(kind); name a package from the package index instead (e.g. \"numpy>=1.26\"), or ask the registry's operator to allow direct references"
            }
            guard Self.isIndexRequirement(text) else {
                return "requirement \(shown) is not a package name with optional extras, versions and markers (PEP 508), e.g. \"numpy>=1.26\""
            }
            return nil
        }
    }

    /// The kind of direct reference `text` is, or nil when it names a package from the index.
    static func directKind(_ text: String) -> String? {
        let lower = text.lowercased()
        for vcs in ["git+", "hg+", "svn+", "bzr+"] where lower.hasPrefix(vcs) { return "a version-control link" }
        let head = lower.split(separator: ";", maxSplits: 1).first.map(String.init) ?? lower
        if head.contains("://") || head.hasPrefix("file:") { return "a URL" }
        if head.contains("@") { return "a direct reference (name @ URL)" }
        if head.hasPrefix(".") || head.hasPrefix("/") || head.hasPrefix("~") || head.contains("/") || head.contains("\\") {
            return "a local path"
        }
        for suffix in [".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz"] where head.hasSuffix(suffix) { return "a package archive" }
        return nil
    }

    /// `name[extras] specifiers ; markers` with the characters PEP 508 allows there.
    static func isIndexRequirement(_ text: String) -> Bool {
        let parts = text.split(separator: ";", maxSplits: 1)
        guard let head = parts.first?.trimmingCharacters(in: .whitespaces), !head.isEmpty else { return false }
        let name = head.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        guard let first = name.first, first.isLetter || first.isNumber else { return false }
        var rest = head.dropFirst(name.count).drop { $0 == " " }
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]") else { return false }
            let extras = rest[rest.index(after: rest.startIndex)..<close]
            guard extras.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-, ".contains($0)) }) else { return false }
            rest = rest[rest.index(after: close)...]
        }
        let specifiers = rest.trimmingCharacters(in: .whitespaces)
        let allowed = Set("<>=!~*.,+ ()")
        return specifiers.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || allowed.contains($0)) }
    }
}
