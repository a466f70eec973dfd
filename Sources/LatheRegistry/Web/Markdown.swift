import CMarkGFM
import Foundation

/// Renders a model's readme with GitHub's own Markdown library (cmark-gfm, with its table,
/// strikethrough, autolink and tag-filter extensions) in its safe mode: raw HTML never passes
/// through and links or images with unsafe schemes lose their URL. Attribute values are
/// escaped by the library, so no text of the readme can open an attribute of its own.
enum Markdown {
    /// Readmes are cut at this size before rendering (the page shows a note).
    static let maxBytes = 512 << 10

    static func html(_ source: String) -> String {
        var text = source
        var cut = false
        if text.utf8.count > maxBytes {
            text = String(decoding: Array(text.utf8.prefix(maxBytes)), as: UTF8.self)
            cut = true
        }
        let rendered: String = text.withCString { pointer in
            guard let html = lathe_markdown_to_html(pointer, strlen(pointer)) else { return "" }
            defer { free(html) }
            // Links leave the site without a referrer or a handle on this page. (Safe mode drops
            // raw HTML, so every `<a href=` in the output is one the renderer wrote.)
            return String(cString: html).replacingOccurrences(of: "<a href=\"", with: "<a rel=\"nofollow noopener\" href=\"")
        }
        return cut ? rendered + "<p><em>The readme is longer than \(maxBytes >> 10) KiB; the rest is not shown.</em></p>" : rendered
    }
}
