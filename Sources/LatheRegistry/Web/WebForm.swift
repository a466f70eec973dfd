import Foundation
import Hummingbird
import MultipartKit
import NIOCore

/// A file chosen in a web form, streamed to a file on this machine as it arrived (removed by
/// the request that read it, once stored).
struct UploadedFile: Sendable {
    var filename: String
    var contentType: String
    /// Where its bytes are (under the registry's scratch folder).
    var file: URL
    var size: Int64
}

/// The fields of a submitted web form (`application/x-www-form-urlencoded` or
/// `multipart/form-data`), read only after its CSRF token matched.
///
/// Bodies are bounded before they are read: a form of fields takes at most ``maxFieldBytes``
/// (a `Content-Length` above it is refused before a byte is read), and a form with files
/// (``readWithFiles(_:context:scratch:)``) streams each file to disk, up to ``maxFileBytes`` in
/// all, holding only its fields in memory.
struct WebForm: Sendable {
    var fields: [String: String] = [:]
    var files: [String: UploadedFile] = [:]

    subscript(_ name: String) -> String? { fields[name] }

    /// The most bytes of fields one form may send (sign-in, settings, the run form's fields).
    static let maxFieldBytes = 64 << 10
    /// Files in a web form, like /v1/files, 100 MB at most.
    static let maxFileBytes: Int64 = 100 << 20

    /// Reads a form of fields (at most 64 KiB) and refuses it (403) unless `_csrf` equals the
    /// visitor's CSRF cookie.
    static func read(_ request: Request, context: RegistryContext) async throws -> WebForm {
        try refuseDeclaredLength(request, above: Int64(maxFieldBytes))
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxFieldBytes)
        } catch {
            throw tooLarge(Int64(maxFieldBytes))
        }
        let type = request.headers[.contentType] ?? ""
        var form = WebForm()
        if type.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = UploadState.parameter("boundary", in: type) else { throw RegistryError(400, "multipart body without a boundary") }
            var parser = try StreamingParser(boundary: boundary, scratch: nil)
            try parser.feed(body)
            form = try parser.finish()
        } else {
            form.fields = parseURLEncoded(String(buffer: body))
        }
        try checkCSRF(form, context: context)
        return form
    }

    /// Reads a multipart form whose file parts stream to files under `scratch` (at most 100 MB
    /// of files, 64 KiB of fields); the caller removes them with ``discardFiles()``.
    static func readWithFiles(_ request: Request, context: RegistryContext, scratch: URL) async throws -> WebForm {
        try refuseDeclaredLength(request, above: maxFileBytes + Int64(maxFieldBytes))
        let type = request.headers[.contentType] ?? ""
        guard type.lowercased().hasPrefix("multipart/form-data") else { return try await read(request, context: context) }
        guard let boundary = UploadState.parameter("boundary", in: type) else { throw RegistryError(400, "multipart body without a boundary") }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        var parser = try StreamingParser(boundary: boundary, scratch: scratch)
        do {
            for try await buffer in request.body { try parser.feed(buffer) }
            let form = try parser.finish()
            try checkCSRF(form, context: context)
            return form
        } catch {
            parser.discard()
            throw error
        }
    }

    /// Removes the files this form streamed to disk.
    func discardFiles() {
        for file in files.values { try? FileManager.default.removeItem(at: file.file) }
    }

    private static func checkCSRF(_ form: WebForm, context: RegistryContext) throws {
        guard !context.csrfToken.isEmpty, let sent = form.fields["_csrf"], constantTimeEqual(sent, context.csrfToken) else {
            form.discardFiles()
            throw RegistryError(403, "This form is missing its security token or it has expired. Go back, reload the page and send it again.")
        }
    }

    private static func refuseDeclaredLength(_ request: Request, above limit: Int64) throws {
        if let declared = request.headers[.contentLength], let length = Int64(declared), length > limit { throw tooLarge(limit) }
    }

    private static func tooLarge(_ limit: Int64) -> RegistryError {
        RegistryError(413, "This form sent more than \(limit >= 1 << 20 ? "\(limit >> 20) MB" : "\(limit >> 10) KiB"); send less (large files go through /v1/files).")
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

    /// A multipart body parsed as it arrives: fields gathered in memory (64 KiB in all), file
    /// parts written to files under `scratch` (refused when there is none: a form of fields).
    struct StreamingParser {
        final class State: @unchecked Sendable {
            var form = WebForm()
            var name: String?
            var filename: String?
            var contentType = "application/octet-stream"
            var data = Data()
            var handle: FileHandle?
            var file: URL?
            var fileSize: Int64 = 0
            var fieldBytes = 0
            var fileBytes: Int64 = 0
            var failure: RegistryError?
        }
        let parser: MultipartParser
        let state = State()

        init(boundary: String, scratch: URL?) throws {
            parser = MultipartParser(boundary: boundary)
            let state = self.state
            parser.onHeader = { header, value in
                switch header.lowercased() {
                case "content-disposition":
                    state.name = UploadState.parameter("name", in: value)
                    state.filename = UploadState.parameter("filename", in: value)
                    if state.filename != nil, state.handle == nil, let scratch {
                        let file = scratch.appendingPathComponent(".form-\(UUID().uuidString)")
                        if FileManager.default.createFile(atPath: file.path, contents: nil) {
                            state.file = file
                            state.handle = FileHandle(forWritingAtPath: file.path)
                        }
                    }
                case "content-type":
                    state.contentType = String(value.prefix(200))
                default:
                    break
                }
            }
            parser.onBody = { buffer in
                guard state.failure == nil else { return }
                if state.filename != nil {
                    state.fileBytes += Int64(buffer.readableBytes)
                    guard let handle = state.handle, state.fileBytes <= WebForm.maxFileBytes else {
                        state.failure = WebForm.tooLarge(scratch == nil ? Int64(WebForm.maxFieldBytes) : WebForm.maxFileBytes)
                        return
                    }
                    do { try handle.write(contentsOf: buffer.readableBytesView) } catch { state.failure = RegistryError(500, "cannot keep the form's file") }
                    state.fileSize += Int64(buffer.readableBytes)
                } else {
                    state.fieldBytes += buffer.readableBytes
                    guard state.fieldBytes <= WebForm.maxFieldBytes else {
                        state.failure = WebForm.tooLarge(Int64(WebForm.maxFieldBytes))
                        return
                    }
                    state.data.append(contentsOf: buffer.readableBytesView)
                }
            }
            parser.onPartComplete = {
                try? state.handle?.close()
                if let name = state.name {
                    if let filename = state.filename {
                        // An empty file picker still sends a part with an empty filename.
                        if let file = state.file, !filename.isEmpty || state.fileSize > 0 {
                            if let old = state.form.files[name] { try? FileManager.default.removeItem(at: old.file) }
                            state.form.files[name] = UploadedFile(filename: String(filename.prefix(255)), contentType: state.contentType,
                                                                  file: file, size: state.fileSize)
                        } else if let file = state.file {
                            try? FileManager.default.removeItem(at: file)
                        }
                    } else {
                        state.form.fields[name] = String(decoding: state.data, as: UTF8.self)
                    }
                } else if let file = state.file {
                    try? FileManager.default.removeItem(at: file)
                }
                state.name = nil
                state.filename = nil
                state.contentType = "application/octet-stream"
                state.data = Data()
                state.handle = nil
                state.file = nil
                state.fileSize = 0
            }
        }

        mutating func feed(_ buffer: ByteBuffer) throws {
            try parser.execute(buffer)
            if let failure = state.failure { discard(); throw failure }
        }

        func finish() throws -> WebForm {
            if let failure = state.failure { discard(); throw failure }
            return state.form
        }

        func discard() {
            try? state.handle?.close()
            if let file = state.file { try? FileManager.default.removeItem(at: file) }
            state.form.discardFiles()
        }
    }
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
}
