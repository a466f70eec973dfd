import Testing
@testable import LatheRegistry

@Suite("readme Markdown")
struct MarkdownTests {
    @Test("markup renders: headings, emphasis, lists, code, links")
    func markup() {
        let html = Markdown.html("# Title\n\nSome **bold** and *italic* and `x < y`.\n\n- one\n- two\n\n```\na <b> c\n```\n\n[docs](https://example.com/a?b=1&c=2)")
        #expect(html.contains("<h2>Title</h2>"))
        #expect(html.contains("<strong>bold</strong>") && html.contains("<em>italic</em>"))
        #expect(html.contains("<code>x &lt; y</code>"))
        #expect(html.contains("<ul><li>one</li><li>two</li></ul>"))
        #expect(html.contains("<pre><code>a &lt;b&gt; c</code></pre>"))
        #expect(html.contains(#"<a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener">docs</a>"#))
    }

    @Test("raw HTML and script URLs never survive", arguments: [
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
    ])
    func inert(_ payload: String) {
        let html = Markdown.html(payload)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img src=x"))
        #expect(!html.lowercased().contains("href=\"javascript") && !html.lowercased().contains("src=\"javascript"))
        #expect(!html.contains("href=\"data:") && !html.contains("href=\"vbscript"))
        #expect(!html.contains("\"onmouseover"))
    }
}
