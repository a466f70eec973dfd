import Foundation
import LatheSpec

/// Packs a project into a model version in the local store (DESIGN §4).
public struct ModelBuilder {
    /// What a build produced; mirrors `lathe build --json`.
    public struct Result: Sendable, Codable {
        public struct Layer: Sendable, Codable {
            public var role: String
            public var path: String
            public var mediaType: String
            public var digest: Digest
            public var size: Int64
            /// Whether the blob was already in the store (unchanged since the last build).
            public var reused: Bool

            enum CodingKeys: String, CodingKey {
                case role, path, digest, size, reused
                case mediaType = "media_type"
            }
        }

        /// The version id: sha256 of the config blob, 64 hex digits.
        public var version: String
        /// The `name:tag` it was tagged with; nil for a build kept untagged.
        public var reference: String?
        public var manifest: Digest
        public var config: Digest
        public var layers: [Layer]
    }

    public var store: LocalStore
    public var cache: StatCache?
    /// Called with (path, bytes hashed so far, total bytes) while large weights are read.
    public var progress: (@Sendable (String, Int64, Int64) -> Void)?

    public init(store: LocalStore, cache: StatCache?) {
        self.store = store
        self.cache = cache
    }

    /// Builds `project` whose parsed spec is `spec` and tags it `refName` (`name:tag`) when given.
    public func build(project: URL, spec: ModelSpec, refName: String?) throws -> Result {
        let files = try ProjectFiles.scan(project, spec: spec)
        var layers: [ModelConfig.Layer] = []
        var descriptors: [Descriptor] = []
        var summary: [Result.Layer] = []
        var pinProblems: [Diagnostic] = []

        // Code layer first: it is small, and a failure here should not cost a weights pass.
        let temporary = try store.temporaryURL()
        let code = try CodeLayerWriter.write(files.code, to: temporary)
        try store.moveIntoPlace(temporary, digest: code.digest)
        layers.append(.init(role: "code", path: ".", digest: code.uncompressedDigest, size: code.uncompressedSize))
        descriptors.append(Descriptor(mediaType: MediaType.codeLayer, digest: code.digest, size: code.size, annotations: [
            Annotation.role: "code", Annotation.title: "code.tar.gz",
            Annotation.uncompressedDigest: code.uncompressedDigest.description,
        ]))
        summary.append(.init(role: "code", path: ".", mediaType: MediaType.codeLayer, digest: code.digest, size: code.size, reused: false))

        for file in files.weights {
            let size = StatCache.key(for: file.url)?.size ?? 0
            let report = progress
            let imported = try store.importFile(file.url, cache: cache) { done in report?(file.path, done, size) }
            if let pin = file.spec.sha256, pin != imported.digest.hex {
                pinProblems.append(Diagnostic(file.spec.location, "weights \"\(file.path)\" has sha256 \(imported.digest.hex) but the pin says \(pin)",
                                              fix: "update sha256: if the new file is intended, or restore the pinned file"))
                continue
            }
            layers.append(.init(role: "weights", path: file.path, digest: imported.digest, size: imported.size))
            descriptors.append(Descriptor(mediaType: MediaType.weightsLayer, digest: imported.digest, size: imported.size,
                                          annotations: [Annotation.role: "weights", Annotation.title: file.path]))
            summary.append(.init(role: "weights", path: file.path, mediaType: MediaType.weightsLayer, digest: imported.digest,
                                 size: imported.size, reused: imported.reused))
        }
        cache?.save()
        if !pinProblems.isEmpty { throw Diagnostics(pinProblems) }

        let config = ModelConfig(spec: spec, openapiSchema: OpenAPISchema.document(for: spec),
                                 requirements: try Self.requirements(spec, project: project), layers: layers)
        let configDescriptor = try store.writeBlob(JSON.canonical(config), mediaType: MediaType.config)
        var annotations: [String: String] = [:]
        if let description = spec.description { annotations[Annotation.description] = description }
        if let license = spec.license { annotations[Annotation.licenses] = license }
        let manifest = Manifest(config: configDescriptor, layers: descriptors, annotations: annotations.isEmpty ? nil : annotations)
        let manifestDescriptor = try store.writeManifest(manifest)
        if let refName { try store.tag(manifestDescriptor, as: refName) }
        return Result(version: configDescriptor.digest.hex, reference: refName, manifest: manifestDescriptor.digest,
                      config: configDescriptor.digest, layers: summary)
    }

    /// The requirement lines a version's environment installs.
    public static func requirements(_ spec: ModelSpec, project: URL) throws -> [String] {
        guard let file = spec.requirements else { return spec.pythonPackages }
        guard let text = try? String(contentsOf: project.appendingPathComponent(file), encoding: .utf8) else {
            throw Diagnostics([Diagnostic(nil, "requirements file \"\(file)\" does not exist", fix: "create it or fix requirements: in lathe.yaml")])
        }
        return text.components(separatedBy: .newlines)
            .map { $0.components(separatedBy: "#")[0].trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }
}
