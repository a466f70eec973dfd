import LatheCore
import LatheStore

/// A mistake the caller can fix; rendered as the API's error shape with `status`.
public struct RegistryError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    /// OCI error code, for /v2 responses.
    public var code: String

    public init(_ status: Int, _ message: String, code: String = "DENIED") {
        self.status = status
        self.message = message
        self.code = code
    }

    public var description: String { message }
    static func notFound(_ message: String, code: String = "NAME_UNKNOWN") -> RegistryError { .init(404, message, code: code) }
}

extension RegistryError {
    /// A store's error as the HTTP surfaces answer it.
    init(_ error: StoreError) {
        let status: Int = switch error.kind {
        case .invalid: 400
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .badRange: 416
        case .failed: 500
        case .unavailable: 503
        }
        self.init(status, error.message, code: error.code ?? "DENIED")
    }

    /// A store's or the core's error as the HTTP surfaces answer it; nil for any other.
    init?(domain error: any Error) {
        switch error {
        case let error as StoreError: self.init(error)
        case let error as CoreError: self.init(error)
        default: return nil
        }
    }

    /// The core's error as the HTTP surfaces answer it.
    init(_ error: CoreError) {
        let status: Int = switch error.kind {
        case .invalid: 400
        case .notFound: 404
        case .failed: 500
        }
        self.init(status, error.message)
    }
}
