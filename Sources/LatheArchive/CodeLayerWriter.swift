import CArchive
import Foundation

/// Writes the deterministic code layer (DESIGN §4) with libarchive: a pax-restricted tar whose
/// entries are sorted bytewise with mtime 0, uid/gid 0, no owner names and modes 0644/0755,
/// gzip'd without a timestamp. The uncompressed bytes are hashed on the way (the layer's
/// identity); the gzip output is hashed as it is written (the blob digest).
public final class CodeLayerWriter {
    /// One file or directory to pack: its path inside the archive and where to read it.
    public struct Entry: Sendable {
        public var path: String
        public var source: URL
        public var isDirectory: Bool
        public var isExecutable: Bool

        public init(path: String, source: URL, isDirectory: Bool, isExecutable: Bool) {
            self.path = path
            self.source = source
            self.isDirectory = isDirectory
            self.isExecutable = isExecutable
        }
    }

    /// What was written.
    public struct Result: Sendable {
        public var uncompressedDigest: Digest
        public var uncompressedSize: Int64
        public var digest: Digest
        public var size: Int64
    }

    /// Sink for the compressed stream: hashes and appends to the output file.
    private final class CompressedSink {
        var digest = DigestWriter()
        let handle: FileHandle
        init(_ handle: FileHandle) { self.handle = handle }
    }

    /// Sink for the uncompressed tar stream: hashes it and feeds it to the gzip archive.
    private final class TarSink {
        var digest = DigestWriter()
        let gzip: OpaquePointer
        var failed = false
        init(_ gzip: OpaquePointer) { self.gzip = gzip }
    }

    /// Packs `entries` (in any order; they are sorted here) into a gzip'd tar at `output`.
    public static func write(_ entries: [Entry], to output: URL) throws -> Result {
        let sorted = entries.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }

        // Outer archive: the gzip filter over a single "raw" entry, so libarchive's zlib path does
        // the compression while we still see the uncompressed tar bytes.
        guard let gzip = archive_write_new() else { throw ArchiveError("libarchive: out of memory") }
        defer { archive_write_free(gzip) }
        archive_write_set_format_raw(gzip)
        archive_write_add_filter_gzip(gzip)
        guard archive_write_set_options(gzip, "gzip:!timestamp,gzip:compression-level=9") == ARCHIVE_OK else {
            throw ArchiveError.libarchive(gzip, "setting gzip options")
        }
        archive_write_set_bytes_per_block(gzip, 0)
        let compressed = CompressedSink(handle)
        let compressedContext = Unmanaged.passUnretained(compressed).toOpaque()
        guard archive_write_open2(gzip, compressedContext, nil, { _, context, buffer, length in
            let sink = Unmanaged<CompressedSink>.fromOpaque(context!).takeUnretainedValue()
            let bytes = UnsafeRawBufferPointer(start: buffer, count: length)
            sink.digest.update(bytes)
            sink.handle.write(Data(bytes))
            return length
        }, nil, nil) == ARCHIVE_OK else { throw ArchiveError.libarchive(gzip, "opening \(output.path)") }
        let rawEntry = archive_entry_new()
        archive_entry_set_pathname(rawEntry, "code.tar")
        archive_entry_set_filetype(rawEntry, LATHE_AE_IFREG)
        guard archive_write_header(gzip, rawEntry) == ARCHIVE_OK else { throw ArchiveError.libarchive(gzip, "starting gzip stream") }
        archive_entry_free(rawEntry)

        // Inner archive: the tar itself.
        guard let tar = archive_write_new() else { throw ArchiveError("libarchive: out of memory") }
        defer { archive_write_free(tar) }
        archive_write_set_format_pax_restricted(tar)
        archive_write_set_bytes_per_block(tar, 10240)
        archive_write_set_bytes_in_last_block(tar, 1)
        let sink = TarSink(gzip)
        let tarContext = Unmanaged.passUnretained(sink).toOpaque()
        guard archive_write_open2(tar, tarContext, nil, { _, context, buffer, length in
            let sink = Unmanaged<TarSink>.fromOpaque(context!).takeUnretainedValue()
            sink.digest.update(UnsafeRawBufferPointer(start: buffer, count: length))
            if archive_write_data(sink.gzip, buffer, length) < 0 { sink.failed = true; return -1 }
            return length
        }, nil, nil) == ARCHIVE_OK else { throw ArchiveError.libarchive(tar, "opening tar stream") }

        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for item in sorted {
            let entry = archive_entry_new()
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname_utf8(entry, item.path)
            archive_entry_set_mtime(entry, 0, 0)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            archive_entry_set_uname(entry, "")
            archive_entry_set_gname(entry, "")
            let file: FileHandle?
            if item.isDirectory {
                archive_entry_set_filetype(entry, LATHE_AE_IFDIR)
                archive_entry_set_perm(entry, 0o755)
                archive_entry_set_size(entry, 0)
                file = nil
            } else {
                let handle = try FileHandle(forReadingFrom: item.source)
                let size = try handle.seekToEnd()
                try handle.seek(toOffset: 0)
                archive_entry_set_filetype(entry, LATHE_AE_IFREG)
                archive_entry_set_perm(entry, item.isExecutable ? 0o755 : 0o644)
                archive_entry_set_size(entry, la_int64_t(size))
                file = handle
            }
            guard archive_write_header(tar, entry) == ARCHIVE_OK else {
                throw ArchiveError.libarchive(tar, "adding \(item.path)")
            }
            if let file {
                defer { try? file.close() }
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(file.fileDescriptor, $0.baseAddress, $0.count) }
                    if count < 0 { throw ArchiveError("reading \(item.source.path): \(String(cString: strerror(errno)))") }
                    if count == 0 { break }
                    guard archive_write_data(tar, buffer, count) == count else {
                        throw ArchiveError.libarchive(tar, "writing \(item.path)")
                    }
                }
            }
        }
        guard archive_write_close(tar) == ARCHIVE_OK, !sink.failed else { throw ArchiveError.libarchive(tar, "finishing tar") }
        guard archive_write_close(gzip) == ARCHIVE_OK else { throw ArchiveError.libarchive(gzip, "finishing gzip") }
        return Result(uncompressedDigest: sink.digest.finalize(), uncompressedSize: sink.digest.count,
                      digest: compressed.digest.finalize(), size: compressed.digest.count)
    }
}
