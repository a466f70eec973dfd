import Foundation
import LatheSpec

/// The worker protocol's JSON bodies (`/internal/v1/workers/…`, docs/worker-protocol.md): what a
/// `lathe worker` and the server that decides for it say to each other. Both sides use these
/// types, so the wire shapes cannot drift apart.
public enum WorkerProtocol {
    /// Where the protocol's routes live on the server.
    public static let root = "/internal/v1/workers"
}

/// `POST /internal/v1/workers/register`: who the worker is and what it offers.
public struct WorkerRegistration: Codable, Sendable {
    /// A name the operator recognizes (the host name by default). A worker that registers
    /// again under the same name and token replaces its earlier self at once.
    public var name: String
    /// `lathe --version` of the worker.
    public var version: String
    public var hardware: HardwareInventory
    /// Most instances the worker runs at once.
    public var capacity: Int
    /// Version ids the worker has in its cache (a cold boot there skips the download).
    public var cached: [String]

    public init(name: String, version: String, hardware: HardwareInventory, capacity: Int, cached: [String]) {
        self.name = name
        self.version = version
        self.hardware = hardware
        self.capacity = capacity
        self.cached = cached
    }
}

/// The answer to a registration: the worker's id and the timings it must keep.
public struct WorkerRegistered: Codable, Sendable {
    public var id: String
    /// Send a heartbeat at least this often.
    public var heartbeatSeconds: Double
    /// Ask for work with `?wait=` at most this long.
    public var pollSeconds: Double
    /// After this long without hearing from the worker, the server counts it lost.
    public var lostAfterSeconds: Double

    public init(id: String, heartbeatSeconds: Double, pollSeconds: Double, lostAfterSeconds: Double) {
        self.id = id
        self.heartbeatSeconds = heartbeatSeconds
        self.pollSeconds = pollSeconds
        self.lostAfterSeconds = lostAfterSeconds
    }

    enum CodingKeys: String, CodingKey {
        case id
        case heartbeatSeconds = "heartbeat_seconds"
        case pollSeconds = "poll_seconds"
        case lostAfterSeconds = "lost_after_seconds"
    }
}

/// `POST …/{worker}/heartbeat`: the worker's cache and running instances as they are now.
public struct WorkerHeartbeat: Codable, Sendable {
    public var cached: [String]
    public var instances: [String]

    public init(cached: [String], instances: [String]) {
        self.cached = cached
        self.instances = instances
    }
}

/// The version an instance runs and where the worker pulls it from (over `/v2`).
public struct WorkerVersion: Codable, Sendable, Hashable {
    /// The version id (its config's digest).
    public var id: String
    /// `owner/name` on the registry.
    public var repository: String
    /// The manifest to pull (`sha256:…`); every blob is checked against its digest.
    public var manifestDigest: String

    public init(id: String, repository: String, manifestDigest: String) {
        self.id = id
        self.repository = repository
        self.manifestDigest = manifestDigest
    }

    enum CodingKeys: String, CodingKey {
        case id, repository
        case manifestDigest = "manifest_digest"
    }
}

/// One thing the server asks a worker to do (the answer to a long poll holds a list).
public struct WorkerCommand: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Start an instance of `version` (pull it first unless cached).
        case boot
        /// Stop `instance`.
        case stop
        /// Run `prediction` on `instance` under `assignment`.
        case predict
        /// Stop the prediction running under `assignment`.
        case cancel
    }

    public var kind: Kind
    public var instance: String?
    public var version: WorkerVersion?
    /// How many whole GPUs the instance gets (boot).
    public var gpus: Int?
    /// The hardware the version asks for (boot): `gpu-…` names the GPU model its GPUs must be.
    public var sku: String?
    /// The claim a prediction runs under: every report about it names this, and a report for
    /// an assignment the server no longer holds is refused (409).
    public var assignment: String?
    public var prediction: String?
    public var input: [String: JSONValue]?
    /// Values of `input` that stand for files: fetch each from `…/assignments/{a}/inputs/{path}`
    /// and put the local path in its place.
    public var inputFiles: [String]?
    public var timeout: Double?
    public var checkSafety: Bool?
    /// The request's `context` (predict), which the model reads as `current_scope().context`.
    public var context: [String: String]?
    /// The command's place in the worker's queue in the store. The worker names the highest it
    /// received in its next poll (`?after=`); until then the command stays queued, so a poll's
    /// answer lost on the way (a replica dying mid-answer) is sent again, and the worker skips
    /// a number it already had. Absent for a command handed straight to a waiting poll.
    public var seq: Int64?

    public init(kind: Kind, instance: String? = nil, version: WorkerVersion? = nil, gpus: Int? = nil, assignment: String? = nil,
                prediction: String? = nil, input: [String: JSONValue]? = nil, inputFiles: [String]? = nil, timeout: Double? = nil,
                checkSafety: Bool? = nil, context: [String: String]? = nil, sku: String? = nil) {
        self.kind = kind
        self.sku = sku
        self.instance = instance
        self.version = version
        self.gpus = gpus
        self.assignment = assignment
        self.prediction = prediction
        self.input = input
        self.inputFiles = inputFiles
        self.timeout = timeout
        self.checkSafety = checkSafety
        self.context = context
    }

    enum CodingKeys: String, CodingKey {
        case kind, instance, version, gpus, sku, assignment, prediction, input, timeout, context, seq
        case inputFiles = "input_files"
        case checkSafety = "check_safety"
    }
}

/// The answer to `GET …/{worker}/work?wait=SECONDS`.
public struct WorkerWork: Codable, Sendable {
    public var commands: [WorkerCommand]
    public init(commands: [WorkerCommand]) { self.commands = commands }
}

/// `POST …/{worker}/instances/{instance}`: how a boot is going or how it ended.
public struct InstanceReport: Codable, Sendable {
    public enum State: String, Codable, Sendable {
        /// Still pulling, unpacking or building; `logs` holds the output so far.
        case booting
        case ready
        case failed
        /// It stopped on its own (crashed) or as asked.
        case stopped
    }

    public var state: State
    public var error: String?
    public var logs: String?
    /// With `failed`: the worker could not take the boot at all (no free GPU of the model it
    /// names, because another server placed an instance there first). Not the model's fault:
    /// the server places it again instead of failing the predictions waiting for it.
    public var refused: Bool?

    public init(state: State, error: String? = nil, logs: String? = nil, refused: Bool? = nil) {
        self.state = state
        self.error = error
        self.logs = logs
        self.refused = refused
    }
}

/// Logs and streamed output items of one prediction, in the order they happened.
public struct WorkerEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case log, output }
    public var kind: Kind
    public var text: String?
    public var index: Int?
    public var value: JSONValue?

    public init(_ event: RunnerEvent) {
        switch event {
        case .log(let text): self.kind = .log; self.text = text
        case .output(let index, let value): self.kind = .output; self.index = index; self.value = value
        }
    }

    /// The runner event this stands for; nil for a malformed one.
    public var runnerEvent: RunnerEvent? {
        switch kind {
        case .log: return text.map { .log($0) }
        case .output: return index.flatMap { index in value.map { .output(index: index, value: $0) } }
        }
    }
}

/// `POST …/{worker}/assignments/{assignment}/events`.
public struct WorkerEventBatch: Codable, Sendable {
    public var events: [WorkerEvent]
    public init(events: [WorkerEvent]) { self.events = events }
}

/// `POST …/{worker}/assignments/{assignment}/complete`: how the prediction ended. Files the
/// output names as `{"$file": NAME}` were uploaded first with `PUT …/files/{NAME}`.
public struct WorkerCompletion: Codable, Sendable {
    public var outcome: PredictionOutcome
    /// Set when the instance's model process had exited by the time the prediction ended: the
    /// instance runs nothing more (the next prediction boots a new one, not this one).
    public var instanceStopped: Bool?
    public init(outcome: PredictionOutcome, instanceStopped: Bool? = nil) {
        self.outcome = outcome
        self.instanceStopped = instanceStopped
    }

    enum CodingKeys: String, CodingKey {
        case outcome
        case instanceStopped = "instance_stopped"
    }
}
