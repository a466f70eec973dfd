import CArchive

/// A failure while packing or unpacking, with the path concerned and what to do.
public struct ArchiveError: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    /// libarchive's own message for the last error on `archive`.
    static func libarchive(_ archive: OpaquePointer?, _ what: String) -> ArchiveError {
        let detail = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        return ArchiveError("\(what): \(detail)")
    }

    public var description: String { message }
}
