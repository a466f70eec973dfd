/// Where a prediction (or, later, a training) is in its life, as Replicate's and Cog's APIs
/// spell it: the one type the stores, the API, the streams and the web pages use.
public enum PredictionStatus: String, Sendable, Codable, Hashable, CaseIterable, CustomStringConvertible {
    case starting, processing, succeeded, canceled, failed

    /// Succeeded, canceled or failed: nothing changes the prediction any more.
    public var isTerminal: Bool {
        switch self {
        case .starting, .processing: false
        case .succeeded, .canceled, .failed: true
        }
    }

    /// The statuses that end a prediction.
    public static let terminal: [PredictionStatus] = allCases.filter(\.isTerminal)

    public var description: String { rawValue }
}
