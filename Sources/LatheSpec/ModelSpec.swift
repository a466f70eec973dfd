/// A parsed and checked `lathe.yaml`: everything that describes a model apart from its files.
public struct ModelSpec: Sendable, Hashable, Codable {
    /// Default push target, `owner/name`.
    public var name: String?
    public var description: String?
    public var license: String?
    public var python: PythonVersion
    public var pythonPackages: [String]
    /// A requirements file inside the project, as an alternative to `python_packages`.
    public var requirements: String?
    /// Debian packages the model's code calls (`system_packages:`), fetched with their
    /// dependencies into a prefix of the environment's own; empty for most models.
    public var systemPackages: [String] {
        get { systemPackagesField ?? [] }
        set { systemPackagesField = newValue.isEmpty ? nil : newValue }
    }
    /// Stored as an optional so a spec without it encodes exactly as before (version digests stay).
    var systemPackagesField: [String]?
    public var predict: EntryPoint
    /// Optional entry point run on outputs (DESIGN §5).
    public var safetyChecker: EntryPoint?
    /// The training entry point and its inputs (`train:`), for models that can be fine-tuned.
    public var train: TrainSpec?
    public var inputs: [InputSpec]
    public var output: OutputSpec
    public var weights: [WeightsSpec]
    public var concurrency: Int
    /// Per-prediction timeout in seconds.
    public var timeout: Int
    public var network: Bool

    /// Where `predict:` is written, for diagnostics about the entry point.
    public var predictLocation: SourceLocation?

    public static let defaultPython = PythonVersion("3.11")!
    public static let defaultTimeout = 30 * 60

    public init(predict: EntryPoint, inputs: [InputSpec] = [], output: OutputSpec = OutputSpec(type: .string)) {
        self.python = Self.defaultPython
        self.pythonPackages = []
        self.predict = predict
        self.inputs = inputs
        self.output = output
        self.weights = []
        self.concurrency = 1
        self.timeout = Self.defaultTimeout
        self.network = false
    }

    public func input(named name: String) -> InputSpec? {
        inputs.first { $0.name == name }
    }

    enum CodingKeys: String, CodingKey {
        case name, description, license, python
        case pythonPackages = "python_packages"
        case systemPackagesField = "system_packages"
        case requirements, predict
        case safetyChecker = "safety_checker"
        case train
        case inputs, output, weights, concurrency, timeout, network
    }
}
