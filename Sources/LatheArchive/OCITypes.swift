import LatheSpec

/// An OCI content descriptor; field names mirror the wire JSON.
public struct Descriptor: Sendable, Hashable, Codable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]?
    public var artifactType: String?

    public init(mediaType: String, digest: Digest, size: Int64, annotations: [String: String]? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
    }
}

/// An OCI image manifest carrying a Lathe model version.
public struct Manifest: Sendable, Hashable, Codable {
    public var schemaVersion: Int = 2
    public var mediaType: String = MediaType.imageManifest
    public var artifactType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
    public var annotations: [String: String]?

    public init(artifactType: String? = MediaType.artifact, config: Descriptor, layers: [Descriptor], annotations: [String: String]? = nil) {
        self.artifactType = artifactType
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }
}

/// An OCI image index, as in a layout's `index.json`.
public struct ImageIndex: Sendable, Hashable, Codable {
    public var schemaVersion: Int = 2
    public var mediaType: String? = MediaType.imageIndex
    public var manifests: [Descriptor]

    public init(manifests: [Descriptor] = []) {
        self.manifests = manifests
    }
}

/// The config blob: everything that identifies a version. Its digest is the version id.
public struct ModelConfig: Sendable, Hashable, Codable {
    /// One layer's identity: its role, the path it holds and the sha256 of its *uncompressed* bytes.
    public struct Layer: Sendable, Hashable, Codable {
        public var role: String
        public var path: String
        public var digest: Digest
        public var size: Int64

        public init(role: String, path: String, digest: Digest, size: Int64) {
            self.role = role
            self.path = path
            self.digest = digest
            self.size = size
        }
    }

    public var format: String = "lathe.model.config.v1"
    public var spec: ModelSpec
    public var openapiSchema: JSONValue
    /// Requirement lines, from `python_packages` or the requirements file.
    public var requirements: [String]
    public var layers: [Layer]
    /// Set only on the config a registry derives to run a training (``forTraining(of:)``):
    /// the runner calls the entry point's `train`. Never in a pushed config.
    public var role: EntryRole?
    /// The version a training config was derived from (with ``role``).
    public var trainingOf: String?

    public init(spec: ModelSpec, openapiSchema: JSONValue, requirements: [String], layers: [Layer]) {
        self.spec = spec
        self.openapiSchema = openapiSchema
        self.requirements = requirements
        self.layers = layers
    }

    enum CodingKeys: String, CodingKey {
        case format, spec, requirements, layers, role
        case openapiSchema = "openapi_schema"
        case trainingOf = "training_of"
    }
}
