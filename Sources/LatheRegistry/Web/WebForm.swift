import Foundation
import Hummingbird
import MultipartKit
import NIOCore

/// A file chosen in a web form.
struct UploadedFile: Sendable {
    var filename: String
    var contentType: String
    var data: Data
}

/// The fields of a submitted web form (`application/x-www-form-urlencoded` or
/// `multipart/form-data`), read only after its CSRF token matched.
struct WebForm: Sendable {
    var fields: [String: String] = [:]
    var files: [String: UploadedFile] = [:]

    subscript(_ name: String) -> String? { fields[name] }

    /// Web forms carry files for model inputs; like /v1/files, 100 MB at most.
    static let maxBytes = 100 << 20

    /// Reads the body and refuses it (403) unless `_csrf` equals the visitor's CSRF cookie.
    static func read(_ request: Request, context: RegistryContext) async throws -> WebForm {
        let body = try await request.body.collect(upTo: maxBytes)
        let type = request.headers[.contentType] ?? ""
        var form = WebForm()
        if type.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = UploadState.parameter("boundary", in: type) else { throw RegistryError(400, "multipart body without a boundary") }
            form = try parseMultipart(body, boundary: boundary)
        } else {
            form.fields = parseURLEncoded(String(buffer: body))
        }
        guard !context.csrfToken.isEmpty, let sent = form.fields["_csrf"], constantTimeEqual(sent, context.csrfToken) else {
            throw RegistryError(403, "This form is missing its security token or it has expired. Go back, reload the page and send it again.")
        }
        return form
    }

    static func parseURLEncoded(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String { part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part) }
            guard let name = parts.first.map(decode) else { continue }
            fields[name] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }

    private static func parseMultipart(_ body: ByteBuffer, boundary: String) throws -> WebForm {
        final class Collector: @unchecked Sendable {
            var form = WebForm()
            var name: String?
            var filename: String?
            var contentType = "application/octet-stream"
            var data = Data()
        }
        let collector = Collector()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { header, value in
            switch header.lowercased() {
            case "content-disposition":
                collector.name = UploadState.parameter("name", in: value)
                collector.filename = UploadState.parameter("filename", in: value)
            case "content-type":
                collector.contentType = value
            default:
                break
            }
        }
        parser.onBody = { buffer in collector.data.append(contentsOf: buffer.readableBytesView) }
        parser.onPartComplete = {
            if let name = collector.name {
                if let filename = collector.filename {
                    // An empty file picker still sends a part with an empty filename.
                    if !filename.isEmpty || !collector.data.isEmpty {
                        collector.form.files[name] = UploadedFile(filename: filename, contentType: collector.contentType, data: collector.data)
                    }
                } else {
                    collector.form.fields[name] = String(decoding: collector.data, as: UTF8.self)
                }
            }
            collector.name = nil
            collector.filename = nil
            collector.contentType = "application/octet-stream"
            collector.data = Data()
        }
        try parser.execute(body)
        return collector.form
    }
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
}
