import Foundation
import NIOCore

/// A byte range of a file as an async sequence of 1 MiB buffers, so uploads never hold a blob
/// in memory.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String
    let range: Range<Int64>
    /// Called with the bytes read so far (for progress bars).
    let progress: @Sendable (Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        let fd: Int32
        var position: Int64
        let end: Int64
        let progress: @Sendable (Int64) -> Void

        mutating func next() async throws -> ByteBuffer? {
            guard position < end else { close(fd); return nil }
            let count = Int(Swift.min(1 << 20, end - position))
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
                pread(fd, pointer.baseAddress, count, off_t(position))
            }
            guard read > 0 else { close(fd); throw CocoaError(.fileReadUnknown) }
            position += Int64(read)
            progress(Int64(read))
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(fd: open(path, O_RDONLY | O_CLOEXEC), position: range.lowerBound, end: range.upperBound, progress: progress)
    }
}
