import Foundation

/// An instance's boot output so far (pull, unpack, environment build; the last 64 KiB), written
/// by the build's thread and read by whoever shows it to the waiting predictions.
public final class BuildLog: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""
    private var changed = false

    public init() {}

    public func append(_ text: String) {
        lock.withLock {
            buffer += text
            if buffer.utf8.count > 128 << 10 { buffer = String(buffer.suffix(64 << 10)) }
            changed = true
        }
    }

    /// Replaces the text (a remote worker reports its boot's output whole).
    public func replace(_ text: String) {
        lock.withLock {
            buffer = String(text.suffix(64 << 10))
            changed = true
        }
    }

    public var text: String { lock.withLock { buffer } }

    /// The text if it changed since the last call, else nil.
    public func takeIfChanged() -> String? {
        lock.withLock {
            defer { changed = false }
            return changed ? buffer : nil
        }
    }
}
