/// A name for a local or remote model version: `owner/name[:tag]`, `owner/name@sha256:…`, or a
/// version id (or a unique prefix of one, at least 6 hex digits).
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var name: String?
    public var tag: String?
    public var digest: Digest?
    /// A version id or prefix given on its own.
    public var versionPrefix: String?

    public static let defaultTag = "latest"

    public init(name: String, tag: String = ImageReference.defaultTag) {
        self.name = name
        self.tag = tag
    }

    /// Parses user input; nil when it is none of the accepted forms.
    public init?(parsing text: String) {
        let bare = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        if bare.count >= 6, bare.count <= 64, bare.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            versionPrefix = bare
            // A hex-looking word may also be a model name; the store tries the name first.
            if !text.hasPrefix("sha256:") { name = text; tag = Self.defaultTag }
            return
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            guard let digest = Digest(parsing: String(rest[rest.index(after: at)...])) else { return nil }
            self.digest = digest
            rest = rest[..<at]
        }
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            let tag = String(rest[rest.index(after: colon)...])
            guard Self.isValidTag(tag) else { return nil }
            self.tag = tag
            rest = rest[..<colon]
        } else if digest == nil {
            tag = Self.defaultTag
        }
        guard Self.isValidName(String(rest)) else { return nil }
        name = String(rest)
    }

    /// OCI repository name rules (lowercase components separated by `/`).
    public static func isValidName(_ name: String) -> Bool {
        name.range(of: #"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"#, options: .regularExpression) != nil
    }

    public static func isValidTag(_ tag: String) -> Bool {
        tag.range(of: #"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"#, options: .regularExpression) != nil
    }

    /// `name:tag`, the value stored as the ref name annotation in the layout's index.
    public var refName: String? {
        guard let name, let tag else { return nil }
        return "\(name):\(tag)"
    }

    public var description: String {
        if let digest, let name { return "\(name)@\(digest)" }
        if let refName { return refName }
        return versionPrefix ?? "?"
    }
}
