/// `train:` in `lathe.yaml`: the entry point that fine-tunes the model (Cog's `train:`), and the
/// inputs it takes. A training runs in the model's environment and sandbox like a prediction;
/// what `train` returns (a weights file, or an object such as Cog's `TrainingOutput` holding
/// one) is its output.
public struct TrainSpec: Sendable, Hashable, Codable {
    /// `file.py:Name`: a function, or a class whose `train` method is called (after `setup()`).
    public var entry: EntryPoint
    public var inputs: [InputSpec]
    /// Where `train:` is written, for diagnostics about the entry point.
    public var location: SourceLocation?

    public init(entry: EntryPoint, inputs: [InputSpec] = []) {
        self.entry = entry
        self.inputs = inputs
    }

    enum CodingKeys: String, CodingKey {
        case entry, inputs
    }
}

/// Which method of a class entry point a runner calls: `predict:`'s `predict` (or `run`), or
/// `train:`'s `train`. A function entry point is called as it is.
public enum EntryRole: String, Sendable, Hashable, Codable {
    case predict, train
}

extension ModelSpec {
    /// The spec a training runs under: `train:`'s entry point and inputs in the model's
    /// environment, one at a time, with no safety checker, and whatever `train` returns as its
    /// output. Nil when the model declares no `train:`.
    public var training: ModelSpec? {
        guard let train else { return nil }
        var spec = self
        spec.predict = train.entry
        spec.predictLocation = train.location
        spec.inputs = train.inputs
        spec.output = OutputSpec(type: .object)
        spec.safetyChecker = nil
        spec.concurrency = 1
        spec.train = nil
        return spec
    }
}
