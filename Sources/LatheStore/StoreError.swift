/// What went wrong in a store, in the store's terms: the HTTP surfaces choose the status and
/// the words around it (`RegistryError(_:)` in LatheRegistry), so no store speaks HTTP.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The caller's value is not acceptable (a name, a digest that does not match).
        case invalid
        case notFound
        /// It exists already, or changed under the caller.
        case conflict
        case tooLarge
        /// A range or offset that the object does not have.
        case badRange
        /// The store itself failed (a disk, a refusal it cannot explain).
        case failed
        /// A backend is unreachable or refused for now: trying again may work.
        case unavailable
    }

    public var kind: Kind
    /// One sentence: what is wrong, where, and what to do.
    public var message: String
    /// The OCI error code, where the store knows it (`BLOB_UNKNOWN`, `DIGEST_INVALID`, …).
    public var code: String?

    public init(_ kind: Kind, _ message: String, code: String? = nil) {
        self.kind = kind
        self.message = message
        self.code = code
    }

    public var description: String { message }
}
