import Foundation
import LatheRunner
import LatheSpec

/// How commands reach the worker an instance runs on: through the fleet (a `lathe worker`'s long
/// polls, or the embedded worker's in-process queue).
package protocol WorkerChannel: Sendable {
    /// Sends a command; commands to one worker arrive in the order they were sent.
    func send(_ command: WorkerCommand)
    /// The instance stopped: nothing more is reported about it.
    func forget(_ instance: RemoteInstance)
}

/// An instance on a worker of the fleet, as the server sees it: a `lathe worker`, or the
/// embedded worker of `lathe serve` (the same worker code, in process). Commands go out through
/// its ``WorkerChannel``; the worker's reports (boot progress, events, files, completion) come
/// back through the worker routes or the in-process source and resume whoever waits here. Every
/// prediction runs under an assignment id; a report naming an assignment this instance no longer
/// holds is refused, so a worker that comes back after it was counted lost cannot overwrite what
/// ran elsewhere.
package final class RemoteInstance: InstanceRunner, @unchecked Sendable {
    package let id: String
    package let workerID: String
    package let workerName: String
    /// Where it runs, as messages name it: "worker NAME".
    package var place: String { "worker \(workerName)" }
    /// The worker's token (its /v2 pull grant is counted against it).
    package let tokenID: String
    package let modelID: String
    /// This server's folder for the instance's inputs and the output files uploaded to it.
    package let work: URL
    /// How long after a prediction's timeout the server gives up on the worker's answer.
    package let backstop: TimeInterval
    private let channel: any WorkerChannel

    private enum State { case booting, ready, stopped, lost }

    private struct Pending {
        package var prediction: String
        var onEvent: @Sendable (RunnerEvent) -> Void
        var continuation: CheckedContinuation<PredictionOutcome, Never>
        package var outputs: URL
        package var inputs: URL
        /// Whether anything (a log line or an output item) came back: a lost prediction that
        /// produced nothing may run again elsewhere.
        var sawEvents = false
        /// The logs so far (kept for a failure the worker cannot report itself).
        package var logs = ""
        var timer: Deadlines.Token?
    }

    private let lock = NSLock()
    private var state = State.booting
    private var bootContinuation: CheckedContinuation<SetupResult, Never>?
    private var bootLog: (@Sendable (String) -> Void)?
    private var pending: [String: Pending] = [:]
    private var assignments: [String: String] = [:]
    private var retryable: Set<String> = []
    /// Why the worker was counted lost (nil while it answers).
    private(set) var lostReason: String?
    /// Why the worker could not take the boot (no free GPU of its model): not the model's fault.
    private(set) var refusedReason: String?
    /// Why setup did not finish without it being the model's fault: lost or refused.
    package var notTheModel: String? { lock.withLock { lostReason ?? refusedReason } }
    /// The boot command and when it was last sent (sent again while the worker's heartbeats do
    /// not list the instance: a long poll's answer can be lost on the way).
    private var bootCommand: WorkerCommand?
    private var bootSentAt = Date.distantPast

    package init(id: String, workerID: String, workerName: String, tokenID: String, modelID: String, work: URL, channel: any WorkerChannel,
                 backstop: TimeInterval = 15) {
        self.backstop = backstop
        self.id = id
        self.workerID = workerID
        self.workerName = workerName
        self.tokenID = tokenID
        self.modelID = modelID
        self.work = work
        self.channel = channel
    }

    package var isRunning: Bool { lock.withLock { state == .ready || state == .booting } }

    /// Asks the worker to start the instance and waits for it to be ready or fail. `log` gets
    /// the boot's output so far (pull, unpack, environment build) as the worker reports it.
    package func boot(_ version: WorkerVersion, gpus: Int, sku: String, log: @escaping @Sendable (String) -> Void) async -> SetupResult {
        await withCheckedContinuation { continuation in
            let command = WorkerCommand(kind: .boot, instance: id, version: version, gpus: gpus, sku: sku)
            let lost = lock.withLock { () -> String? in
                if let lostReason { return lostReason }
                bootContinuation = continuation
                bootLog = log
                bootCommand = command
                bootSentAt = Date()
                return nil
            }
            if let lost {
                continuation.resume(returning: .failed(error: lost, logs: ""))
                return
            }
            channel.send(command)
        }
    }

    /// Sends the boot again when the worker's heartbeat does not list this booting instance
    /// although the boot went out more than `grace` ago (the worker never got it). The worker
    /// ignores a boot for an instance it has, so a late duplicate does no harm. True when sent.
    @discardableResult
    func resendBootIfMissing(reported: Set<String>, grace: TimeInterval, now: Date = Date()) -> Bool {
        let command = lock.withLock { () -> WorkerCommand? in
            guard state == .booting, !reported.contains(id), let bootCommand, now.timeIntervalSince(bootSentAt) > grace else { return nil }
            bootSentAt = now
            return bootCommand
        }
        guard let command else { return false }
        channel.send(command)
        return true
    }

    /// A boot report from the worker.
    package func report(_ report: InstanceReport) {
        let (continuation, log, result): (CheckedContinuation<SetupResult, Never>?, (@Sendable (String) -> Void)?, SetupResult?) = lock.withLock {
            switch report.state {
            case .booting:
                return (nil, bootLog, nil)
            case .ready:
                guard state == .booting else { return (nil, nil, nil) }
                state = .ready
                defer { bootContinuation = nil }
                return (bootContinuation, nil, .ready(setupTime: 0, logs: report.logs ?? ""))
            case .failed, .stopped:
                let wasBooting = state == .booting
                if state != .lost { state = .stopped }
                if wasBooting, report.refused == true { refusedReason = "\(place) refused it: \(report.error ?? "no room")" }
                defer { bootContinuation = nil }
                return (wasBooting ? bootContinuation : nil, nil,
                        .failed(error: report.error ?? "the instance stopped", logs: report.logs ?? ""))
            }
        }
        if let log, let logs = report.logs { log(logs) }
        if let continuation, let result { continuation.resume(returning: result) }
        if report.state == .failed || report.state == .stopped { failPending("the model process on \(place) stopped: \(report.error ?? "no reason given")", retry: false) }
    }

    package func predict(id prediction: String, input: [String: JSONValue], context: [String: String], outputDirectory: URL, timeout: TimeInterval, checkSafety: Bool,
                 onEvent: @escaping @Sendable (RunnerEvent) -> Void) async -> PredictionOutcome {
        let inputs = work.appendingPathComponent("inputs/\(prediction)", isDirectory: true)
        var files: [String] = []
        let wire = input.mapValues { Self.relativize($0, under: inputs.path + "/", files: &files) }
        let assignment = "a-" + PredictionService.newID()
        return await withCheckedContinuation { continuation in
            let refused = lock.withLock { () -> String? in
                guard state == .ready else { return lostReason ?? "the instance on \(place) is not running" }
                pending[assignment] = Pending(prediction: prediction, onEvent: onEvent, continuation: continuation,
                                              outputs: outputDirectory, inputs: inputs)
                assignments[prediction] = assignment
                // The worker enforces the timeout; this is the backstop should it never answer.
                pending[assignment]?.timer = Deadlines.shared.after(timeout + backstop) { [weak self] in
                    self?.finish(assignment, PredictionOutcome(status: .failed, error: "Prediction timed out: \(self?.place ?? "its worker") did not answer within \(Int(timeout)) s"))
                }
                return nil
            }
            if let refused {
                continuation.resume(returning: PredictionOutcome(status: .failed, error: refused))
                return
            }
            channel.send(WorkerCommand(kind: .predict, instance: id, assignment: assignment, prediction: prediction, input: wire,
                                               inputFiles: files, timeout: timeout, checkSafety: checkSafety, context: context.isEmpty ? nil : context))
        }
    }

    /// Local input paths become paths relative to the prediction's input folder (the worker
    /// fetches each and puts its own path in place); everything else is sent as it is.
    static func relativize(_ value: JSONValue, under prefix: String, files: inout [String]) -> JSONValue {
        switch value {
        case .string(let text) where text.hasPrefix(prefix):
            let relative = String(text.dropFirst(prefix.count))
            files.append(relative)
            return .string(relative)
        case .array(let items):
            return .array(items.map { relativize($0, under: prefix, files: &files) })
        default:
            return value
        }
    }

    /// Logs and streamed items from the worker; false when the assignment is not held here.
    package func events(_ assignment: String, _ events: [WorkerEvent]) -> Bool {
        guard let onEvent = lock.withLock({ () -> (@Sendable (RunnerEvent) -> Void)? in
            guard pending[assignment] != nil else { return nil }
            if !events.isEmpty { pending[assignment]?.sawEvents = true }
            for event in events where event.kind == .log { pending[assignment]?.logs += event.text ?? "" }
            return pending[assignment]?.onEvent
        }) else { return false }
        for event in events { if let runnerEvent = event.runnerEvent { onEvent(runnerEvent) } }
        return true
    }

    /// Where an uploaded output file goes; nil when the assignment is not held here or the name
    /// is not a plain file name.
    package func outputFile(_ assignment: String, name: String) -> URL? {
        guard Self.isPlainName(name), let outputs = lock.withLock({ pending[assignment]?.outputs }) else { return nil }
        return outputs.appendingPathComponent(name)
    }

    /// An input file of the assignment's prediction, by the relative path the command named.
    package func inputFile(_ assignment: String, path: String) -> URL? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ Self.isPlainName(String($0)) }),
              let inputs = lock.withLock({ pending[assignment]?.inputs }) else { return nil }
        return inputs.appendingPathComponent(path)
    }

    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }

    /// The worker's final word on a prediction; false when the assignment is not held here.
    /// With `instanceStopped` the instance is counted stopped before the prediction's runner
    /// hears the outcome, so nothing more is placed on it.
    package func complete(_ assignment: String, _ outcome: PredictionOutcome, instanceStopped: Bool = false) -> Bool {
        if instanceStopped {
            let held = lock.withLock { () -> Bool in
                guard pending[assignment] != nil else { return false }
                if state != .lost { state = .stopped }
                return true
            }
            guard held else { return false }
        }
        return finish(assignment, outcome)
    }

    @discardableResult
    private func finish(_ assignment: String, _ outcome: PredictionOutcome) -> Bool {
        guard let entry = lock.withLock({ () -> Pending? in
            guard let entry = pending.removeValue(forKey: assignment) else { return nil }
            assignments.removeValue(forKey: entry.prediction)
            return entry
        }) else { return false }
        entry.timer.map(Deadlines.shared.cancel)
        entry.continuation.resume(returning: outcome)
        return true
    }

    package func cancel(id prediction: String) {
        guard let assignment = lock.withLock({ assignments[prediction] }) else { return }
        channel.send(WorkerCommand(kind: .cancel, instance: id, assignment: assignment, prediction: prediction))
    }

    package func terminate() {
        let wasUp = lock.withLock { () -> Bool in
            defer { if state != .lost { state = .stopped } }
            return state == .ready || state == .booting
        }
        if wasUp { channel.send(WorkerCommand(kind: .stop, instance: id)) }
        channel.forget(self)
        try? FileManager.default.removeItem(at: work)
    }

    /// The worker stopped answering: the boot and every prediction here end now. Predictions
    /// that had produced nothing are marked to run again elsewhere (``takeRetry(_:)``).
    func lost(_ reason: String) {
        let continuation = lock.withLock { () -> CheckedContinuation<SetupResult, Never>? in
            state = .lost
            lostReason = reason
            defer { bootContinuation = nil }
            return bootContinuation
        }
        continuation?.resume(returning: .failed(error: reason, logs: ""))
        failPending(reason, retry: true)
    }

    private func failPending(_ reason: String, retry: Bool) {
        let ended = lock.withLock { () -> [Pending] in
            let all = Array(pending.values)
            if retry { for entry in all where !entry.sawEvents { retryable.insert(entry.prediction) } }
            pending.removeAll()
            assignments.removeAll()
            return all
        }
        for entry in ended {
            entry.timer.map(Deadlines.shared.cancel)
            entry.continuation.resume(returning: PredictionOutcome(status: .failed, error: reason, logs: entry.logs))
        }
    }

    /// True once for a prediction that was lost with its worker before it produced anything.
    package func takeRetry(_ prediction: String) -> Bool {
        lock.withLock { retryable.remove(prediction) != nil }
    }
}
