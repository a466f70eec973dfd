import CArchive
import Foundation

/// Unpacks an untrusted tar (optionally gzip'd) without ever writing outside the target.
///
/// Only regular files and directories are accepted: absolute paths, `..`, symbolic and hard
/// links, devices and FIFOs are refused, as are archives over the size or entry limits. Files are
/// written into a fresh staging folder beside the target (which can hold no links, since none are
/// ever created) and the folder is renamed into place only when every entry passed.
public struct SafeExtractor: Sendable {
    /// Most bytes all files together may hold once unpacked.
    public var maxTotalBytes: Int64
    /// Most entries the archive may hold.
    public var maxEntries: Int

    public init(maxTotalBytes: Int64 = 2 << 30, maxEntries: Int = 100_000) {
        self.maxTotalBytes = maxTotalBytes
        self.maxEntries = maxEntries
    }

    /// Extracts `archive` into `target`, which must not exist yet.
    public func extract(_ archive: URL, to target: URL) throws {
        let fileManager = FileManager.default
        let staging = target.deletingLastPathComponent()
            .appendingPathComponent(".\(target.lastPathComponent).partial-\(UUID().uuidString)")
        try fileManager.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try unpack(archive, into: staging)
            guard rename(staging.path, target.path) == 0 else {
                throw ArchiveError("cannot move the extracted files to \(target.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? fileManager.removeItem(at: staging)
            throw error
        }
    }

    private func unpack(_ url: URL, into root: URL) throws {
        guard let reader = archive_read_new() else { throw ArchiveError("libarchive: out of memory") }
        defer { archive_read_free(reader) }
        archive_read_support_filter_gzip(reader)
        archive_read_support_filter_none(reader)
        archive_read_support_format_tar(reader)
        guard archive_read_open_filename(reader, url.path, 1 << 20) == ARCHIVE_OK else {
            throw ArchiveError.libarchive(reader, "opening \(url.lastPathComponent)")
        }
        var entry: OpaquePointer?
        var entries = 0
        var total: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let status = archive_read_next_header(reader, &entry)
            if status == ARCHIVE_EOF { break }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
                throw ArchiveError.libarchive(reader, "reading \(url.lastPathComponent)")
            }
            entries += 1
            if entries > maxEntries {
                throw ArchiveError("refused \(url.lastPathComponent): more than \(maxEntries) entries")
            }
            let rawPath = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            let path = try Self.safeRelativePath(rawPath)
            if archive_entry_hardlink(entry) != nil {
                throw ArchiveError("refused entry \"\(rawPath)\": hard links are not allowed")
            }
            let type = archive_entry_filetype(entry)
            let destination = root.appendingPathComponent(path)
            switch UInt32(type) {
            case LATHE_AE_IFDIR:
                if !path.isEmpty { try makeDirectories(destination, under: root) }
            case LATHE_AE_IFREG:
                guard !path.isEmpty else { throw ArchiveError("refused a file entry with an empty name") }
                let declared = archive_entry_size(entry)
                if total + declared > maxTotalBytes {
                    throw ArchiveError("refused \(url.lastPathComponent): unpacked size would exceed \(maxTotalBytes) bytes (tar bomb?)")
                }
                try makeDirectories(destination.deletingLastPathComponent(), under: root)
                let executable = archive_entry_perm(entry) & 0o111 != 0
                let fd = open(destination.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, executable ? 0o755 : 0o644)
                guard fd >= 0 else {
                    throw ArchiveError("refused entry \"\(rawPath)\": \(errno == EEXIST ? "it appears twice" : String(cString: strerror(errno)))")
                }
                defer { close(fd) }
                while true {
                    let count = buffer.withUnsafeMutableBytes { archive_read_data(reader, $0.baseAddress, $0.count) }
                    if count < 0 { throw ArchiveError.libarchive(reader, "reading \(rawPath)") }
                    if count == 0 { break }
                    total += Int64(count)
                    if total > maxTotalBytes {
                        throw ArchiveError("refused \(url.lastPathComponent): unpacked size exceeds \(maxTotalBytes) bytes (tar bomb?)")
                    }
                    let written = buffer.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, count) }
                    guard written == count else { throw ArchiveError("writing \(path): \(String(cString: strerror(errno)))") }
                }
            case LATHE_AE_IFLNK:
                throw ArchiveError("refused entry \"\(rawPath)\": symbolic links are not allowed")
            default:
                throw ArchiveError("refused entry \"\(rawPath)\": only regular files and directories are allowed (devices, FIFOs and sockets are not)")
            }
        }
    }

    private func makeDirectories(_ directory: URL, under root: URL) throws {
        guard directory.path.hasPrefix(root.path) else { throw ArchiveError("refused a path outside the target") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Normalises an entry name, refusing absolute paths and any `..` component.
    static func safeRelativePath(_ raw: String) throws -> String {
        if raw.hasPrefix("/") { throw ArchiveError("refused entry \"\(raw)\": absolute paths are not allowed") }
        var parts: [Substring] = []
        for component in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if component == "." { continue }
            if component == ".." { throw ArchiveError("refused entry \"\(raw)\": paths with .. are not allowed") }
            parts.append(component)
        }
        return parts.joined(separator: "/")
    }
}
