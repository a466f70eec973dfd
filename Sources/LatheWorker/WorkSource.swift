import Foundation
import LatheRunner

/// The other end of a worker (DESIGN §6): where its versions come from and where everything its
/// instances do goes. ``WorkerInstances`` runs every command the same way whichever source it
/// has: a registry over HTTP for `lathe worker` (``HTTPWorkSource``), or the server itself for
/// the embedded worker of `lathe serve`, in process and without the HTTP hop.
///
/// A report that throws was refused (the server no longer holds the instance or the assignment,
/// for example because it counted the worker lost) or could not be delivered after retries.
package protocol WorkSource: Sendable {
    /// The folder versions are unpacked under and environments built in.
    var home: URL { get }
    /// How long a prediction's events gather before they are sent together.
    var batchInterval: TimeInterval { get }
    /// The version ready to configure, marked in use until ``release(_:)``; `note`, when set, is
    /// a line for the operator saying where it came from.
    func acquire(_ version: WorkerVersion) async throws -> (PreparedModel, note: String?)
    /// The version is no longer run by one instance.
    func release(_ version: WorkerVersion) async
    /// How an instance's boot is going, how it ended, or that it stopped.
    func report(instance: String, _ report: InstanceReport) async throws
    /// Puts the input file `path` (as the command named it) of the assignment at `target`.
    func fetchInput(instance: String, assignment: String, path: String, to target: URL, limit: Int64) async throws
    /// Logs and streamed items of the assignment, in order.
    func sendEvents(instance: String, assignment: String, _ events: [WorkerEvent]) async throws
    /// An output file the assignment's output names as `{"$file": name}`; it may be moved away.
    func sendOutput(instance: String, assignment: String, name: String, file: URL) async throws
    /// How the assignment's prediction ended.
    func complete(instance: String, assignment: String, _ completion: WorkerCompletion) async throws
}
