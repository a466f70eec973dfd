import LatheRunner

/// A worker inside this process (`lathe serve`'s embedded worker): the fleet hands it its
/// commands in order, where a `lathe worker` would take them with a long poll.
package protocol LocalWorker: Sendable {
    /// Registered as `id`: told before any replica can place on it.
    func joined(as id: String)
    func send(_ command: WorkerCommand)
}
