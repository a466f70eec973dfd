import CArchive
import Foundation

/// The digest of a gzip stream's *uncompressed* bytes, computed while inflating with libarchive,
/// so a registry can check a code layer against the config without unpacking it.
public enum GzipDigest {
    public static func uncompressed(_ url: URL, maxBytes: Int64 = 4 << 30) throws -> (Digest, Int64) {
        guard let reader = archive_read_new() else { throw ArchiveError("libarchive: out of memory") }
        defer { archive_read_free(reader) }
        archive_read_support_filter_gzip(reader)
        archive_read_support_format_raw(reader)
        guard archive_read_open_filename(reader, url.path, 1 << 20) == ARCHIVE_OK else {
            throw ArchiveError.libarchive(reader, "opening \(url.lastPathComponent)")
        }
        var entry: OpaquePointer?
        guard archive_read_next_header(reader, &entry) == ARCHIVE_OK else {
            throw ArchiveError.libarchive(reader, "reading \(url.lastPathComponent) as gzip")
        }
        var writer = DigestWriter()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = archive_read_data(reader, buffer.baseAddress, buffer.count)
            if count < 0 { throw ArchiveError.libarchive(reader, "inflating \(url.lastPathComponent)") }
            if count == 0 { break }
            writer.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            if writer.count > maxBytes { throw ArchiveError("\(url.lastPathComponent) inflates to more than \(maxBytes) bytes") }
        }
        return (writer.finalize(), writer.count)
    }
}
