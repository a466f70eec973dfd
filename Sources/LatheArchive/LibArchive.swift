import CArchive

/// The libarchive this process loaded (`lathe doctor` reports it; gzip needs its zlib support).
public enum LibArchive {
    /// Version and the compression libraries it was built with, e.g. "libarchive 3.6.2 zlib/1.2.13 …".
    public static var details: String { String(cString: archive_version_details()) }
    /// Whether it can write and read gzip, which every layer uses.
    public static var hasGzip: Bool { details.contains("zlib/") }
}
