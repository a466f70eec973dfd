import Foundation
import LatheSpec
import NIOCore
import NIOPosix
import NIOFoundationCompat

/// One running copy of a model: the runner process (sandboxed when possible) and the
/// predictions it is answering.
public final class ModelProcess: @unchecked Sendable {
    /// Everything needed to start the runner for one model.
    public struct Configuration: Sendable {
        /// The model's code (with its weights in place).
        public var project: URL
        public var entryPoint: EntryPoint
        public var environment: PythonEnvironment
        /// Folder for per-prediction inputs and outputs; writable by the model.
        public var workDirectory: URL
        public var sandbox: Sandbox?
        /// Extra read-only paths the model needs (hard-linked weights live inside `project`).
        public var readOnlyPaths: [String] = []
        /// Passed to setup(weights=…) when it takes that parameter.
        public var weights: String?
        /// Most bytes of logs kept per prediction.
        public var logLimit: Int = 8 << 20
        /// Address-space limit for the model process, 0 for none.
        public var memoryLimit: Int = 0
        /// The spec's `safety_checker`, run on outputs of predictions that ask for it.
        public var safetyChecker: EntryPoint?
        /// Most processes a sandboxed model may have at once before it is stopped.
        public var maxProcesses = 64
        /// Whole GPUs this instance was given (their device nodes and `CUDA_VISIBLE_DEVICES`).
        public var gpus = GPUAccess(devices: [], environment: [:])
        /// Predictions the process answers at once (the spec's `concurrency`).
        public var concurrency = 1
        /// Which method of a class entry point answers: `predict` (or `run`), or `train`.
        public var role = EntryRole.predict
        /// The prefix the spec's `system_packages` were unpacked into (``SystemPackages``).
        public var systemPrefix: URL?

        public init(project: URL, entryPoint: EntryPoint, environment: PythonEnvironment, workDirectory: URL, sandbox: Sandbox?) {
            self.project = project
            self.entryPoint = entryPoint
            self.environment = environment
            self.workDirectory = workDirectory
            self.sandbox = sandbox
        }
    }

    private struct Pending {
        var logs = ""
        var metrics: [String: JSONValue] = [:]
        var onEvent: @Sendable (RunnerEvent) -> Void
        var continuation: CheckedContinuation<PredictionOutcome, Never>
        var timedOut = false
        /// Sleeps until the deadline; canceled when the prediction ends first.
        /// Fires the timeout; cancelling a dispatch work item wakes no thread (a sleeping Task would).
        var timer: Deadlines.Token?
    }

    public let configuration: Configuration
    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let lock = NSLock()
    private var pending: [String: Pending] = [:]
    private var setupLogs = ""
    private var setupContinuation: CheckedContinuation<SetupResult, Never>?
    private var setupResult: SetupResult?
    private var exited = false
    private var watchdog: ProcessWatchdog?
    private var forkBombed = false
    private var exitHandler: (@Sendable () -> Void)?

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// Whether the runner process is still alive.
    public var isRunning: Bool { process.isRunning }

    /// Calls `handler` once the process has exited (at once if it already has), after every
    /// prediction it was running has ended.
    public func whenExited(_ handler: @escaping @Sendable () -> Void) {
        lock.lock()
        if exited {
            lock.unlock()
            handler()
            return
        }
        exitHandler = handler
        lock.unlock()
    }

    /// The runner's process id (bwrap's, when sandboxed).
    public var pid: Int32 { process.processIdentifier }

    /// Starts the runner and waits until setup() finished or failed.
    public func start() async throws -> SetupResult {
        let runnerScript = try Self.runnerScript()
        var command = [configuration.environment.python.path, "-u", runnerScript.path, "--entry", configuration.entryPoint.description]
        if configuration.memoryLimit > 0 { command += ["--memory-limit", String(configuration.memoryLimit)] }
        if let checker = configuration.safetyChecker { command += ["--safety-checker", checker.description] }
        if configuration.concurrency > 1 { command += ["--concurrency", String(configuration.concurrency)] }
        if configuration.role == .train {
            // Cog's trainers write their weights where they stand (`open("weights.bin", "w")`);
            // the project is read-only, so a training starts in a writable folder of its own.
            command += ["--role", "train", "--workspace", configuration.workDirectory.appendingPathComponent("workspace").path]
        }
        let launch = try configuration.launch(command, extraReadOnly: [runnerScript.deletingLastPathComponent().path])
        process.executableURL = URL(fileURLWithPath: launch.executable)
        process.arguments = launch.arguments
        process.environment = launch.environment
        process.currentDirectoryURL = launch.directory
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        // Python's own stderr is redirected by the runner; anything before that (a crash of the
        // interpreter itself) still reaches setup logs through the same pipe.
        process.standardError = stdoutPipe
        process.terminationHandler = { [weak self] process in self?.exited(process) }
        try process.run()
        if configuration.sandbox != nil {
            watchdog = ProcessWatchdog(bwrapPID: process.processIdentifier, limit: configuration.maxProcesses) { [weak self] in
                self?.lock.withLock { self?.forkBombed = true }
            }
        }
        // Its answers are read on the hot path's event loop: the loop that wakes for a `done` is
        // the one that writes the prediction's response (no reader thread to wake in between).
        let descriptor = dup(stdoutPipe.fileHandleForReading.fileDescriptor)
        do {
            _ = try await NIOPipeBootstrap(group: HotPath.loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(LineReader { [self] line in handle(line: line) })
                    }
                }
                .takingOwnershipOfDescriptor(input: descriptor).get()
        } catch {
            close(descriptor)
            terminate()
            throw error
        }
        return await withCheckedContinuation { continuation in
            lock.lock()
            if let setupResult {
                lock.unlock()
                continuation.resume(returning: setupResult)
            } else {
                setupContinuation = continuation
                lock.unlock()
            }
        }
    }

    /// Runs one prediction; `onEvent` sees logs and iterator items as they arrive. `context` is
    /// the request's context, which the model reads as `cog.current_scope().context`.
    public func predict(id: String, input: [String: JSONValue], context: [String: String] = [:], outputDirectory: URL, timeout: TimeInterval,
                        checkSafety: Bool = false,
                        onEvent: @escaping @Sendable (RunnerEvent) -> Void = { _ in }) async -> PredictionOutcome {
        // The runner creates `outputDirectory` when the model writes its first file.
        let outcome = await withCheckedContinuation { continuation in
            lock.lock()
            if exited {
                lock.unlock()
                continuation.resume(returning: PredictionOutcome(status: .failed, error: "the model process is not running"))
                return
            }
            pending[id] = Pending(onEvent: onEvent, continuation: continuation)
            pending[id]?.timer = Deadlines.shared.after(timeout) { [weak self] in self?.timeOut(id) }
            lock.unlock()
            send(RunnerCommand(type: "predict", id: id, input: input, outputDir: outputDirectory.path, safety: checkSafety, context: context))
        }
        return outcome
    }

    /// Asks the model to stop a prediction; it ends as `canceled`.
    public func cancel(id: String) {
        send(RunnerCommand(type: "cancel", id: id))
    }

    /// Stops the process (SIGTERM, then SIGKILL).
    public func terminate() {
        guard process.isRunning else { return }
        send(RunnerCommand(type: "shutdown"))
        try? stdinPipe.fileHandleForWriting.close()
        let process = self.process
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    // MARK: - Internals

    private func timeOut(_ id: String) {
        lock.lock()
        guard pending[id] != nil else { lock.unlock(); return }
        pending[id]?.timedOut = true
        lock.unlock()
        cancel(id: id)
        // A predictor that ignores cancellation is killed; its prediction fails as timed out.
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { [weak self] in
            guard let self else { return }
            self.lock.lock()
            let stillRunning = self.pending[id] != nil
            self.lock.unlock()
            if stillRunning { kill(self.process.processIdentifier, SIGKILL) }
        }
    }

    private func send(_ command: RunnerCommand) {
        let data = Data(command.line)
        lock.lock(); defer { lock.unlock() }
        guard !exited else { return }
        try? stdinPipe.fileHandleForWriting.write(contentsOf: data)
    }

    private func handle(line: Data) {
        guard let message = RunnerMessage(line: line) else {
            // Output before the runner took over stdout (e.g. the interpreter failing to start).
            appendLog(String(decoding: line, as: UTF8.self) + "\n", id: nil)
            return
        }
        switch message.type {
        case "log":
            appendLog(message.data ?? "", id: message.id)
        case "output":
            lock.lock()
            let handler = message.id.flatMap { pending[$0]?.onEvent }
            lock.unlock()
            handler?(.output(index: message.index ?? 0, value: message.value ?? .null))
        case "metric":
            guard let id = message.id, let name = message.name, let value = message.value, value.doubleValue != nil else { return }
            lock.withLock {
                guard var entry = pending[id] else { return }
                entry.metrics = Self.record(name, value, mode: message.mode, into: entry.metrics)
                pending[id] = entry
            }
        case "done":
            guard let id = message.id else { return }
            lock.lock()
            let entry = pending.removeValue(forKey: id)
            lock.unlock()
            guard let entry else { return }
            entry.timer.map(Deadlines.shared.cancel)
            var status = PredictionOutcome.Status(rawValue: message.status ?? "failed") ?? .failed
            var error = message.error
            if entry.timedOut { status = .failed; error = "Prediction timed out" }
            var outcome = PredictionOutcome(status: status, output: message.output, error: error, logs: entry.logs, predictTime: message.predictTime)
            outcome.metrics = entry.metrics.isEmpty ? nil : entry.metrics
            entry.continuation.resume(returning: outcome)
        case "ready":
            finishSetup(.ready(setupTime: message.setupTime ?? 0, logs: setupLogs))
        case "setup_failed":
            finishSetup(.failed(error: message.error ?? "setup failed", logs: setupLogs))
        default:
            break
        }
    }

    /// A model's metric applied to what it recorded so far (`replace`, `incr` adds, `append`
    /// makes a list), within bounds: 64 names, 1000 values in a list, `predict_time` Lathe's own.
    static func record(_ name: String, _ value: JSONValue, mode: String?, into metrics: [String: JSONValue]) -> [String: JSONValue] {
        guard name != "predict_time", name.utf8.count <= 128, metrics[name] != nil || metrics.count < 64, let number = value.doubleValue else { return metrics }
        var metrics = metrics
        switch mode {
        case "incr": metrics[name] = .number((metrics[name]?.doubleValue ?? 0) + number)
        case "append":
            var list = metrics[name]?.arrayValue ?? []
            if list.count < 1000 { list.append(value) }
            metrics[name] = .array(list)
        default: metrics[name] = value
        }
        return metrics
    }

    private func appendLog(_ text: String, id: String?) {
        lock.lock()
        if let id, var entry = pending[id] {
            if entry.logs.utf8.count < configuration.logLimit { entry.logs += text }
            pending[id] = entry
            lock.unlock()
            entry.onEvent(.log(text))
        } else {
            if setupLogs.utf8.count < configuration.logLimit { setupLogs += text }
            lock.unlock()
        }
    }

    private func finishSetup(_ result: SetupResult) {
        lock.lock()
        guard setupResult == nil else { lock.unlock(); return }
        setupResult = result
        let continuation = setupContinuation
        setupContinuation = nil
        lock.unlock()
        continuation?.resume(returning: result)
    }

    private func exited(_ process: Process) {
        // Under bubblewrap, a model killed by a signal shows as bwrap exiting with 128 + signal.
        let signal: Int32? = process.terminationReason == .uncaughtSignal ? process.terminationStatus
            : (configuration.sandbox != nil && process.terminationStatus > 128 ? process.terminationStatus - 128 : nil)
        let reason = signal.map { "the model process was killed by signal \($0)" }
            ?? "the model process exited with status \(process.terminationStatus)"
        watchdog?.stop()
        lock.lock()
        exited = true
        let bombed = forkBombed
        let waiting = pending
        pending.removeAll()
        lock.unlock()
        finishSetup(.failed(error: "setup did not finish: \(reason)", logs: setupLogs))
        for (_, entry) in waiting {
            entry.timer.map(Deadlines.shared.cancel)
            let error = entry.timedOut ? "Prediction timed out"
                : bombed ? "Prediction failed: the model started more than \(configuration.maxProcesses) processes (a fork bomb?) and was stopped"
                : "Prediction failed: \(reason) while it was running"
            entry.continuation.resume(returning: PredictionOutcome(status: .failed, error: error, logs: entry.logs))
        }
        let handler = lock.withLock { () -> (@Sendable () -> Void)? in
            defer { exitHandler = nil }
            return exitHandler
        }
        handler?()
    }

    /// The runner program shipped with Lathe.
    public static func runnerScript() throws -> URL {
        guard let url = Bundle.module.url(forResource: "runner", withExtension: "py") else {
            throw Diagnostic(nil, "runner.py is missing from the Lathe installation", fix: "reinstall Lathe")
        }
        return url
    }
}

/// Splits what the runner writes into lines (a last line without its newline counts too).
private final class LineReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let onLine: (Data) -> Void
    private var buffer = ByteBuffer()

    init(onLine: @escaping (Data) -> Void) {
        self.onLine = onLine
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let newline = buffer.withUnsafeReadableBytes({ $0.firstIndex(of: 0x0A) }) {
            let line = buffer.readData(length: newline) ?? Data()
            buffer.moveReaderIndex(forwardBy: 1)
            onLine(line)
        }
        buffer.discardReadBytes()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if buffer.readableBytes > 0, let rest = buffer.readData(length: buffer.readableBytes) { onLine(rest) }
        context.fireChannelInactive()
    }
}
