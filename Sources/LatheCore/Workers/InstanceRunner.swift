import Foundation
import LatheRunner
import LatheSpec

/// One running copy of a version, wherever it runs (``RemoteInstance``: on the embedded worker
/// or a `lathe worker` of the fleet, DESIGN §6). The scheduler decides; runners run.
package protocol InstanceRunner: AnyObject, Sendable {
    /// False once the instance has stopped, crashed or its worker was lost.
    var isRunning: Bool { get }
    /// Runs one prediction; `onEvent` sees logs and streamed items as they happen. File inputs
    /// are paths under the instance's work folder; output files land in `outputDirectory`.
    func predict(id: String, input: [String: JSONValue], context: [String: String], outputDirectory: URL, timeout: TimeInterval, checkSafety: Bool,
                 onEvent: @escaping @Sendable (RunnerEvent) -> Void) async -> PredictionOutcome
    /// Asks the running prediction to stop (it ends `canceled`).
    func cancel(id: String)
    /// Stops the instance.
    func terminate()
    /// True once for a prediction whose runner was lost before it produced anything (it may
    /// run again elsewhere); a local process never loses one that way.
    func takeRetry(_ prediction: String) -> Bool
}
