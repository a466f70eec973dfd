/// File name extensions for the media types models commonly read and write, both ways.
public enum MediaTypes {
    static let byType = [
        "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "audio/wav": ".wav",
        "audio/mpeg": ".mp3", "video/mp4": ".mp4", "text/plain": ".txt", "application/json": ".json",
    ]

    /// `.png` for `image/png`; empty when unknown.
    public static func fileExtension(for type: String) -> String {
        byType[type] ?? ""
    }

    /// `image/png` for `x.png` (and `.jpeg` as `.jpg`); `application/octet-stream` when unknown.
    public static func type(forFileName name: String) -> String {
        var ext = "." + (name.split(separator: ".").last.map(String.init) ?? "").lowercased()
        if ext == ".jpeg" { ext = ".jpg" }
        return byType.first { $0.value == ext }?.key ?? "application/octet-stream"
    }
}
