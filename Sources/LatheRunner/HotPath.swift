import NIOCore
import NIOPosix

/// Where a prediction's own work runs: its tasks (intake, executor, the embedded worker's
/// command and event hand-offs) and the reading of the model's answers. The HTTP server
/// (`RegistryApplication.make`) hands it its event loop, so that a prediction goes from the
/// request to the model's pipe and from the model's answer to the response on one thread,
/// without waking a thread of Swift's global pool at each `Task` and actor hop (on a small
/// machine each wake-up costs more than the work it carries). Without a server (`lathe worker`,
/// `lathe predict`) the tasks run on the global pool and the pipes are read on NIO's shared loop.
///
/// Only short, non-blocking work runs here: file copies, unpacking and environment builds stay
/// on their own threads.
public enum HotPath {
    /// The server's one event loop: HTTP, the model pipes, PostgreSQL's connections.
    public static let loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    /// The loop as a task executor.
    public static let loopExecutor = EventLoopTaskExecutor(loopGroup.next())

    /// Where hot-path tasks run: the loop once ``enable()`` was called, else nil (Swift's pool).
    nonisolated(unsafe) private static var preferred: EventLoopTaskExecutor?

    /// Runs the prediction path on ``loopGroup`` from now on. Called once, by the server,
    /// before it serves.
    public static func enable() {
        preferred = loopExecutor
    }

    /// The loop that reads the model processes' answers.
    package static var loop: any EventLoop { preferred?.loop ?? MultiThreadedEventLoopGroup.singleton.next() }

    /// `Task { … }` on the hot path's executor (when one is set).
    @discardableResult
    package static func task<Success: Sendable>(_ operation: sending @escaping () async -> Success) -> Task<Success, Never> {
        Task(executorPreference: preferred, operation: operation)
    }
}

/// An event loop as a task executor: jobs run on the loop's thread, in the order they came.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    public let loop: any EventLoop

    public init(_ loop: any EventLoop) {
        self.loop = loop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
