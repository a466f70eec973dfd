import Foundation

/// Renders a model's readme: a Markdown subset (headings, paragraphs, lists, quotes, fenced code,
/// emphasis, inline code, links and images) to HTML that is safe by construction. The text is
/// HTML-escaped first, so raw HTML never passes through, and only http(s), relative and mailto
/// links survive (`javascript:` and friends become plain text). Markdown libraries on our list
/// pass raw HTML and URLs through unescaped, which is why this one is ours.
enum Markdown {
    static func html(_ source: String) -> String {
        var out: [String] = []
        var paragraph: [String] = []
        var list: (ordered: Bool, items: [String])?
        var code: [String]?

        func flushParagraph() {
            if !paragraph.isEmpty { out.append("<p>\(inline(paragraph.joined(separator: " ")))</p>") }
            paragraph = []
        }
        func flushList() {
            if let current = list {
                let tag = current.ordered ? "ol" : "ul"
                out.append("<\(tag)>" + current.items.map { "<li>\(inline($0))</li>" }.joined() + "</\(tag)>")
            }
            list = nil
        }

        for rawLine in source.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(rawLine)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if var lines = code {
                if trimmed.hasPrefix("```") {
                    out.append("<pre><code>\(escape(lines.joined(separator: "\n")))</code></pre>")
                    code = nil
                } else {
                    lines.append(line)
                    code = lines
                }
                continue
            }
            if trimmed.hasPrefix("```") {
                flushParagraph(); flushList()
                code = []
            } else if trimmed.isEmpty {
                flushParagraph(); flushList()
            } else if let level = heading(trimmed) {
                flushParagraph(); flushList()
                let text = trimmed.drop(while: { $0 == "#" }).trimmingCharacters(in: .whitespaces)
                out.append("<h\(level + 1)>\(inline(text))</h\(level + 1)>")
            } else if let item = listItem(trimmed) {
                flushParagraph()
                if list == nil || list!.ordered != item.ordered { flushList(); list = (item.ordered, []) }
                list!.items.append(item.text)
            } else if trimmed.hasPrefix(">") {
                flushParagraph(); flushList()
                out.append("<blockquote>\(inline(trimmed.dropFirst().trimmingCharacters(in: .whitespaces)))</blockquote>")
            } else {
                flushList()
                paragraph.append(trimmed)
            }
        }
        if let lines = code { out.append("<pre><code>\(escape(lines.joined(separator: "\n")))</code></pre>") }
        flushParagraph(); flushList()
        return out.joined(separator: "\n")
    }

    /// `#` to `######` followed by a space; headings start at h2 (the page has the h1).
    private static func heading(_ line: String) -> Int? {
        let hashes = line.prefix { $0 == "#" }.count
        guard (1...6).contains(hashes), line.dropFirst(hashes).first == " " else { return nil }
        return min(hashes, 5)
    }

    private static func listItem(_ line: String) -> (ordered: Bool, text: String)? {
        if line.hasPrefix("- ") || line.hasPrefix("* ") || line.hasPrefix("+ ") { return (false, String(line.dropFirst(2))) }
        let digits = line.prefix { $0.isNumber }
        if !digits.isEmpty, line.dropFirst(digits.count).hasPrefix(". ") { return (true, String(line.dropFirst(digits.count + 2))) }
        return nil
    }

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    /// Inline markup on already-split text: code spans first (their content is literal), then
    /// images, links, bold and italics on escaped text.
    static func inline(_ text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let tick = rest.firstIndex(of: "`") {
            result += spans(String(rest[..<tick]))
            let after = rest[rest.index(after: tick)...]
            guard let close = after.firstIndex(of: "`") else { rest = after; result += "`"; continue }
            result += "<code>\(escape(String(after[..<close])))</code>"
            rest = after[after.index(after: close)...]
        }
        return result + spans(String(rest))
    }

    private static func spans(_ text: String) -> String {
        var html = escape(text)
        html = replace(#"!\[([^\]]*)\]\(([^)\s]+)\)"#, in: html) { groups in
            guard let url = safeURL(groups[2]) else { return groups[1] }
            return "<img src=\"\(url)\" alt=\"\(groups[1])\">"
        }
        html = replace(#"\[([^\]]+)\]\(([^)\s]+)\)"#, in: html) { groups in
            guard let url = safeURL(groups[2]) else { return groups[1] }
            return "<a href=\"\(url)\" rel=\"nofollow noopener\">\(groups[1])</a>"
        }
        html = replace(#"\*\*([^*]+)\*\*"#, in: html) { "<strong>\($0[1])</strong>" }
        html = replace(#"(?<![\w*])\*([^*\s][^*]*)\*"#, in: html) { "<em>\($0[1])</em>" }
        html = replace(#"(?<!\w)_([^_\s][^_]*)_(?!\w)"#, in: html) { "<em>\($0[1])</em>" }
        return html
    }

    /// The (already escaped) URL when its scheme is allowed: http, https, mailto or none.
    static func safeURL(_ escaped: String) -> String? {
        let plain = escaped.replacingOccurrences(of: "&amp;", with: "&").lowercased()
            .filter { !$0.isWhitespace && !$0.isNewline && $0.asciiValue.map { $0 >= 0x20 } ?? true }
        if let colon = plain.firstIndex(of: ":"), !plain[..<colon].contains("/"), !plain[..<colon].contains("?"), !plain[..<colon].contains("#") {
            let scheme = plain[..<colon]
            guard ["http", "https", "mailto"].contains(scheme) else { return nil }
        }
        // Entities could spell a scheme once decoded by the browser; refuse them outside &amp;.
        if plain.contains("&") && plain.replacingOccurrences(of: "&quot;", with: "").range(of: #"&#|&[a-z]+;"#, options: .regularExpression) != nil {
            return nil
        }
        return escaped
    }

    private static func replace(_ pattern: String, in text: String, _ transform: ([String]) -> String) -> String {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return text }
        let source = text as NSString
        var result = ""
        var last = 0
        for match in regex.matches(in: text, range: NSRange(location: 0, length: source.length)) {
            result += source.substring(with: NSRange(location: last, length: match.range.location - last))
            let groups = (0..<match.numberOfRanges).map { match.range(at: $0).location == NSNotFound ? "" : source.substring(with: match.range(at: $0)) }
            result += transform(groups)
            last = match.range.location + match.range.length
        }
        return result + source.substring(from: last)
    }
}
