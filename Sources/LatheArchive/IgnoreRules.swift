import Foundation

/// `.latheignore` rules in gitignore syntax: `#` comments, `!` negation, a trailing `/` for
/// folders only, a leading or inner `/` anchoring to the project root, `*`, `?`, `[…]` and `**`.
public struct IgnoreRules: Sendable {
    struct Rule: Sendable {
        var regex: NSRegularExpression
        var negated: Bool
        var directoryOnly: Bool
    }

    private var rules: [Rule] = []

    /// What is never packed, whatever `.latheignore` says.
    public static let builtin = [".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", ".DS_Store", ".lathe/", ".venv/", "venv/"]

    public init(_ text: String) {
        for line in (Self.builtin + text.components(separatedBy: .newlines)) {
            if let rule = Self.rule(line) { rules.append(rule) }
        }
    }

    /// Reads `.latheignore` in `project`, if any.
    public init(project: URL) {
        let text = (try? String(contentsOf: project.appendingPathComponent(".latheignore"), encoding: .utf8)) ?? ""
        self.init(text)
    }

    /// Whether `path` (relative, `/`-separated) is ignored. The last matching rule wins.
    public func isIgnored(_ path: String, isDirectory: Bool) -> Bool {
        var ignored = false
        let range = NSRange(path.startIndex..., in: path)
        for rule in rules where !(rule.directoryOnly && !isDirectory) {
            if rule.regex.firstMatch(in: path, range: range) != nil { ignored = !rule.negated }
        }
        return ignored
    }

    static func rule(_ raw: String) -> Rule? {
        var line = raw.trimmingCharacters(in: .whitespaces)
        guard !line.isEmpty, !line.hasPrefix("#") else { return nil }
        var negated = false
        if line.hasPrefix("!") { negated = true; line.removeFirst() }
        if line.hasPrefix("\\") { line.removeFirst() }
        var directoryOnly = false
        if line.hasSuffix("/") { directoryOnly = true; line.removeLast() }
        let anchored = line.contains("/")
        if line.hasPrefix("/") { line.removeFirst() }
        var pattern = anchored ? "^" : "(^|/)"
        var index = line.startIndex
        while index < line.endIndex {
            let character = line[index]
            if line[index...].hasPrefix("**/") {
                pattern += "(.*/)?"
                index = line.index(index, offsetBy: 3)
                continue
            }
            if line[index...].hasPrefix("**") {
                pattern += ".*"
                index = line.index(index, offsetBy: 2)
                continue
            }
            switch character {
            case "*": pattern += "[^/]*"
            case "?": pattern += "[^/]"
            case "[":
                if let close = line[index...].firstIndex(of: "]") {
                    var set = String(line[line.index(after: index)..<close])
                    if set.hasPrefix("!") { set = "^" + set.dropFirst() }
                    pattern += "[" + set.replacingOccurrences(of: "\\", with: "\\\\") + "]"
                    index = line.index(after: close)
                    continue
                }
                pattern += "\\["
            default: pattern += NSRegularExpression.escapedPattern(for: String(character))
            }
            index = line.index(after: index)
        }
        pattern += "$"
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return nil }
        return Rule(regex: regex, negated: negated, directoryOnly: directoryOnly)
    }
}
