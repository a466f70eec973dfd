/// What the execution core refuses or cannot do, in its own terms (a kind and one sentence);
/// the HTTP surfaces choose the status, as they do for ``StoreError``.
public struct CoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The caller's request is not acceptable (a webhook filter, an address).
        case invalid
        /// What the request names is gone.
        case notFound
        /// Something stored is unreadable, or the machine failed.
        case failed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
