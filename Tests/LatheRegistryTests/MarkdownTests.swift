import Testing
@testable import LatheRegistry
@testable import LatheCore
@testable import LatheStore

@Suite("readme Markdown")
struct MarkdownTests {
    @Test("markup renders: headings one level down, emphasis, lists, code, links, tables")
    func markup() {
        let html = Markdown.html("# Title\n\nSome **bold** and *italic* and `x < y`.\n\n- one\n- two\n\n```\na <b> c\n```\n\n[docs](https://example.com/a?b=1&c=2)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
        #expect(html.contains("<h2>Title</h2>"))
        #expect(html.contains("<strong>bold</strong>") && html.contains("<em>italic</em>"))
        #expect(html.contains("<code>x &lt; y</code>"))
        #expect(html.contains("<li>one</li>") && html.contains("<li>two</li>"))
        #expect(html.contains("<pre><code>a &lt;b&gt; c\n</code></pre>"))
        #expect(html.contains(#"<a rel="nofollow noopener" href="https://example.com/a?b=1&amp;c=2">docs</a>"#))
        #expect(html.contains("<table>") && html.contains("<td>1</td>"))
    }

    /// The corpus the browser test (tests/python/test_web_ui.py) also renders and inspects.
    static let payloads = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](data:text/html,hi)",
        "[x](vbscript:msgbox)",
        "![x](javascript:alert(1))",
        "[x](https://a.example/\"onmouseover=\"alert(1))",
        "[x](&#106;avascript:alert(1))",
        "![p](x/[)](/a/onerror=alert(1)//)",
        "[a](/x \"t\\\" id=clobber name=clobber\")",
        "<a id=clobber name=clobber href=#>x</a>",
        "<details open ontoggle=alert(1)>",
        "[<img src=x onerror=alert(1)>](https://a.example)",
        "![a\" onerror=\"alert(1)](https://a.example/i.png)",
        "<svg><script>alert(1)</script></svg>",
        "<iframe src=javascript:alert(1)>",
    ]

    @Test("raw HTML, script URLs and injected attributes never survive", arguments: payloads)
    func inert(_ payload: String) {
        let html = Markdown.html(payload)
        let lower = html.lowercased()
        #expect(!lower.contains("<script") && !lower.contains("<iframe") && !lower.contains("<svg") && !lower.contains("<details"))
        #expect(!html.contains("<img src=x"))
        #expect(!lower.contains("href=\"javascript") && !lower.contains("src=\"javascript"))
        #expect(!html.contains("href=\"data:") && !html.contains("href=\"vbscript"))
        // Every attribute of every tag is one the renderer writes (values quoted and escaped).
        let allowed: Set<String> = ["href", "src", "alt", "title", "rel", "align", "start", "class", "lang", "type", "checked", "disabled"]
        #expect(Self.attributeNames(html).isSubset(of: allowed), "\(html)")
    }

    /// Attribute names of the tags in `html` (a small scanner: values are double-quoted there).
    static func attributeNames(_ html: String) -> Set<String> {
        var names: Set<String> = []
        let tag = try! Regex(#"<[a-zA-Z][a-zA-Z0-9]*((?:\s+[^\s=>"/]+(?:="[^"]*")?)*)\s*/?>"#)
        let attribute = try! Regex(#"([^\s=>"/]+)(?:="[^"]*")?"#)
        for match in html.matches(of: tag) {
            guard let attributes = match.output[1].substring else { continue }
            for found in attributes.matches(of: attribute) { names.insert(String(found.output[1].substring ?? "").lowercased()) }
        }
        return names
    }
}
