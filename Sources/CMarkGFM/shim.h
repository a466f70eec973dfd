#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <stdlib.h>
#include <string.h>

/* GitHub-flavoured Markdown to HTML in cmark-gfm's safe mode (the default without
   CMARK_OPT_UNSAFE): raw HTML is dropped and links or images with unsafe schemes
   (javascript:, vbscript:, file:, most data:) lose their URL. Returns a malloc'd string the
   caller frees, or NULL. */
static inline char *lathe_markdown_to_html(const char *text, size_t length) {
    cmark_gfm_core_extensions_ensure_registered();
    int options = CMARK_OPT_VALIDATE_UTF8 | CMARK_OPT_NORMALIZE;
    cmark_parser *parser = cmark_parser_new(options);
    if (parser == NULL) return NULL;
    const char *names[] = {"table", "strikethrough", "autolink", "tagfilter"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        cmark_syntax_extension *extension = cmark_find_syntax_extension(names[i]);
        if (extension != NULL) cmark_parser_attach_syntax_extension(parser, extension);
    }
    cmark_parser_feed(parser, text, length);
    cmark_node *document = cmark_parser_finish(parser);
    char *html = NULL;
    if (document != NULL) {
        /* The page's own title is the h1: the readme's headings start one level below it. */
        cmark_iter *iter = cmark_iter_new(document);
        cmark_event_type event;
        while ((event = cmark_iter_next(iter)) != CMARK_EVENT_DONE) {
            cmark_node *node = cmark_iter_get_node(iter);
            if (event == CMARK_EVENT_ENTER && cmark_node_get_type(node) == CMARK_NODE_HEADING) {
                int level = cmark_node_get_heading_level(node);
                cmark_node_set_heading_level(node, level < 6 ? level + 1 : 6);
            }
        }
        cmark_iter_free(iter);
        html = cmark_render_html(document, options, cmark_parser_get_syntax_extensions(parser));
        cmark_node_free(document);
    }
    cmark_parser_free(parser);
    return html;
}
