/// The media types of a Lathe model version (DESIGN §4).
public enum MediaType {
    public static let artifact = "application/vnd.lathe.model.v1"
    public static let config = "application/vnd.lathe.model.config.v1+json"
    public static let codeLayer = "application/vnd.lathe.model.code.v1.tar+gzip"
    public static let weightsLayer = "application/vnd.lathe.model.weights.v1"
    public static let imageManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let imageIndex = "application/vnd.oci.image.index.v1+json"
}

/// Annotation keys used on manifests, layers and index entries.
public enum Annotation {
    public static let title = "org.opencontainers.image.title"
    public static let refName = "org.opencontainers.image.ref.name"
    public static let created = "org.opencontainers.image.created"
    public static let description = "org.opencontainers.image.description"
    public static let licenses = "org.opencontainers.image.licenses"
    /// `code` or `weights`.
    public static let role = "dev.lathe.layer.role"
    /// sha256 of a compressed layer's uncompressed bytes.
    public static let uncompressedDigest = "dev.lathe.layer.uncompressed-digest"
}
