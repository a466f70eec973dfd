import Foundation
import LatheTestSupport
import Testing
@testable import LatheSpec

@Suite("train: in lathe.yaml")
struct TrainSpecTests {
    let base = "predict: predict.py:Predictor\noutput: {type: string}\n"

    @Test("train: is an entry point with inputs of its own, or a bare entry point; a training runs under a spec of its own")
    func parses() throws {
        let spec = try SpecParser.parse(base + """
        safety_checker: safety.py:check
        concurrency: 4
        inputs: {text: string}
        train:
          entry: train.py:Trainer
          inputs:
            steps: {type: integer, default: 10, minimum: 1}
            data: {type: file}
        """)
        let train = try #require(spec.train)
        #expect(train.entry.description == "train.py:Trainer" && train.inputs.map(\.name) == ["steps", "data"])
        #expect(train.location?.line == 7)
        let training = try #require(spec.training)
        #expect(training.predict == train.entry && training.inputs == train.inputs && training.predictLocation == train.location)
        #expect(training.safetyChecker == nil && training.concurrency == 1 && training.train == nil && training.output.type == .object)
        #expect(training.python == spec.python && training.weights == spec.weights)

        let bare = try SpecParser.parse(base + "train: train.py:train\n")
        #expect(bare.train?.entry.symbol == "train" && bare.train?.inputs == [])
        #expect(try SpecParser.parse(base).training == nil)
    }

    @Test("a pushed config keeps train:, and the registry's re-parse checks it; a spec without it encodes as before")
    func roundTrip() throws {
        let spec = try SpecParser.parse(base + "train: {entry: train.py:train, inputs: {steps: {type: integer, maximum: 5}}}\n")
        let decoded = try JSONDecoder().decode(ModelSpec.self, from: JSONEncoder().encode(spec))
        #expect(decoded.train?.entry == spec.train?.entry && decoded.train?.inputs.map(\.name) == ["steps"])
        #expect(try SpecParser.check(decoded).train?.inputs.first?.maximum == 5)
        // Version digests hash the encoded spec: one without train: must not gain a key.
        let plain = String(decoding: try JSONEncoder().encode(SpecParser.parse(base)), as: UTF8.self)
        #expect(!plain.contains("train"), "\(plain)")
        // A config whose train inputs break the rules is refused like lathe.yaml's.
        var bad = spec
        bad.train?.inputs[0].maximum = 1
        bad.train?.inputs[0].default = .int(3)
        #expect(throws: Diagnostics.self) { try SpecParser.check(bad) }
    }

    @Test("bad train: gets a sentence with its line")
    func badTrain() {
        #expect(diagnostics(base + "train: {inputs: {}}\n") == ["lathe.yaml:3:8: train: has no entry: — write for example `train: {entry: train.py:train, inputs: {steps: {type: integer}}}`"])
        #expect(diagnostics(base + "train: ../train.py:train\n").first?.hasPrefix("lathe.yaml:3:8: train: must name file.py:Name inside the project") == true)
        #expect(diagnostics(base + "train: [a]\n").first?.contains("train entry must be a single value") == true)
        #expect(diagnostics(base + "train: {entry: t.py:t, input: {}}\n").first?.contains("unknown key \"input\" in train:") == true)
        #expect(diagnostics(base + "train: {entry: t.py:t, inputs: {1x: string}}\n").first?.contains("input name \"1x\" is not a Python identifier") == true)
    }

    @Test("lathe validate compares train: with the training code as it does predict:")
    func checkedAgainstCode() throws {
        let project = try TestSupport.makeProject([
            "predict.py": "def predict(text: str) -> str:\n    return text\n",
            "train.py": """
            class Trainer:
                def setup(self):
                    pass

                def train(self, steps: int = 10, rate: float = 0.1) -> str:
                    return "w"
            """,
        ])
        defer { try? FileManager.default.removeItem(at: project) }
        let good = try SpecParser.parse("predict: predict.py:predict\ninputs: {text: string}\noutput: {type: string}\n"
                                        + "train: {entry: train.py:Trainer, inputs: {steps: {type: integer, default: 10}, rate: {type: number, default: 0.1}}}\n")
        #expect(throws: Never.self) { try PredictorCheck.check(good, project: project) }
        var wrong = good
        wrong.train?.inputs[0].type = .string
        wrong.train?.inputs[0].default = .string("10")
        wrong.train?.inputs.removeLast()
        do {
            try PredictorCheck.check(wrong, project: project)
            Issue.record("a train() that disagrees with train: inputs: passed")
        } catch let error as Diagnostics {
            let text = error.items.map(\.description)
            #expect(text.contains { $0.contains("parameter \"steps\" is annotated int (integer) but lathe.yaml declares it string") }, "\(text)")
            #expect(text.contains { $0.contains("parameter \"rate\" is not declared in lathe.yaml") && $0.contains("declare it under train: inputs:") }, "\(text)")
        }
        var missing = good
        missing.train?.entry = EntryPoint(file: "predict.py", symbol: "Trainer")
        #expect(throws: Diagnostics.self) { try PredictorCheck.check(missing, project: project) }
    }
}
