import CArchive
import Foundation

/// Reading, hashing and copying large files in big buffers, never whole in memory.
public enum FileHashing {
    /// Buffer size for reads: large enough that syscalls cost nothing next to SHA-256.
    static let bufferSize = 4 << 20

    /// Hashes a file, reporting progress as bytes are read.
    public static func digest(of url: URL, progress: ((Int64) -> Void)? = nil) throws -> (Digest, Int64) {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ArchiveError("cannot read \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var writer = DigestWriter()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, bufferSize)
            if count < 0 {
                if errno == EINTR { continue }
                throw ArchiveError("cannot read \(url.path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            writer.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            progress?(writer.count)
        }
        return (writer.finalize(), writer.count)
    }

    /// Copies a file in the kernel (`copy_file_range`), falling back to read/write.
    public static func copy(_ source: URL, to destination: URL) throws {
        let input = open(source.path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ArchiveError("cannot read \(source.path): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let output = open(destination.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw ArchiveError("cannot write \(destination.path): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        while true {
            let copied = lathe_copy_file_range(input, output, 1 << 30)
            if copied > 0 { continue }
            if copied == 0 { return }
            if errno == EINTR { continue }
            if errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP { break }
            throw ArchiveError("cannot copy \(source.path): \(String(cString: strerror(errno)))")
        }
        // Fallback for file systems without copy_file_range: continue from the current offsets.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let count = read(input, buffer.baseAddress, bufferSize)
            if count < 0 { if errno == EINTR { continue }; throw ArchiveError("cannot read \(source.path)") }
            if count == 0 { return }
            var offset = 0
            while offset < count {
                let written = write(output, buffer.baseAddress! + offset, count - offset)
                if written < 0 { if errno == EINTR { continue }; throw ArchiveError("cannot write \(destination.path)") }
                offset += written
            }
        }
    }
}
