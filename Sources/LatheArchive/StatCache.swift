import Foundation

/// Remembers the digest of files by (path, size, mtime, ctime, inode), so an unchanged weights
/// file is not read again on rebuild.
public final class StatCache: @unchecked Sendable {
    struct Key: Codable, Hashable {
        var size: Int64
        var mtime: Int64
        var ctime: Int64
        var inode: UInt64
        var device: UInt64
    }

    struct Record: Codable {
        var key: Key
        var digest: Digest
    }

    private let url: URL
    private var records: [String: Record]
    private var dirty = false
    private let lock = NSLock()

    public init(url: URL) {
        self.url = url
        let data = FileManager.default.contents(atPath: url.path) ?? Data()
        records = (try? JSONDecoder().decode([String: Record].self, from: data)) ?? [:]
    }

    static func key(for file: URL) -> Key? {
        var info = stat()
        guard stat(file.path, &info) == 0 else { return nil }
        return Key(size: Int64(info.st_size),
                   mtime: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                   ctime: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec),
                   inode: UInt64(info.st_ino), device: UInt64(info.st_dev))
    }

    /// The remembered digest, if the file has not changed since.
    public func digest(for file: URL) -> Digest? {
        guard let key = Self.key(for: file) else { return nil }
        lock.lock(); defer { lock.unlock() }
        guard let record = records[file.standardizedFileURL.path], record.key == key else { return nil }
        return record.digest
    }

    func remember(_ digest: Digest, for file: URL, key: Key) {
        lock.lock(); defer { lock.unlock() }
        records[file.standardizedFileURL.path] = Record(key: key, digest: digest)
        dirty = true
    }

    /// Writes the cache back (atomically) if anything changed.
    public func save() {
        lock.lock(); defer { lock.unlock() }
        guard dirty, let data = try? JSONEncoder().encode(records) else { return }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? data.write(to: url, options: .atomic)
        dirty = false
    }
}
