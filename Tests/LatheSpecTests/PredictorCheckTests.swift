import Foundation
import LatheTestSupport
import Testing
@testable import LatheSpec

/// Runs the static check and returns its rendered diagnostics.
func check(_ yaml: String, _ python: String?) throws -> [String] {
    var files = ["lathe.yaml": yaml]
    if let python { files["predict.py"] = python }
    let project = try TestSupport.makeProject(files)
    defer { try? FileManager.default.removeItem(at: project) }
    let spec = try SpecParser.load(project: project)
    do {
        try PredictorCheck.check(spec, project: project)
        return []
    } catch let error as Diagnostics {
        return error.items.map(\.description)
    }
}

@Suite("static check of the predict entry point")
struct PredictorCheckTests {
    let yaml = """
    predict: predict.py:Predictor
    inputs:
      text: {type: string}
      top_k: {type: integer, default: 1}
    output: {type: string}
    """

    @Test("a matching predictor passes, Cog style included")
    func passes() throws {
        #expect(try check(yaml, """
        from cog import BasePredictor, Input
        class Predictor(BasePredictor):
            def setup(self, weights=None):
                pass
            def predict(self, text: str = Input(description="t"), top_k: int = Input(default=1, ge=1)) -> str:
                return text
        """) == [])
        #expect(try check(yaml.replacingOccurrences(of: "Predictor", with: "run_it"), """
        def run_it(text: str, top_k: int = 1) -> str:
            return text
        """) == [])
    }

    @Test("missing predict file")
    func missingFile() throws {
        #expect(try check(yaml, nil) == [
            "lathe.yaml:1:10: predict file \"predict.py\" does not exist — create predict.py next to lathe.yaml or fix predict:",
        ])
    }

    @Test("missing class")
    func missingClass() throws {
        #expect(try check(yaml, "class Other:\n    def predict(self): pass\n") == [
            "lathe.yaml:1:10: predict.py has no class or function named \"Predictor\" — define it, or point predict: at one of Other",
        ])
    }

    @Test("class without predict or run")
    func noMethod() throws {
        #expect(try check(yaml, "x = 1\nclass Predictor:\n    def go(self): pass\n") == [
            "predict.py:2:1: class \"Predictor\" has no predict() or run() method — add `def predict(self, ...)` to it",
        ])
    }

    @Test("declared input the predictor lacks")
    func lacksInput() throws {
        #expect(try check(yaml, "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n") == [
            "predict.py:2:5: predict() has no parameter \"top_k\", which lathe.yaml declares (lathe.yaml:4) — add `top_k` to predict() or remove it from inputs:",
        ])
    }

    @Test("a parameter that is not declared, with a default or without")
    func undeclaredParameter() throws {
        #expect(try check(yaml, "class Predictor:\n    def predict(self, text: str, top_k: int = 1, mode: str = None, *, seed: int) -> str:\n        return text\n") == [
            "predict.py:2:50: parameter \"mode\" is not declared in lathe.yaml, so no caller can set it (it would always be its default) — run `lathe validate --write` to declare it under inputs: from the signature",
            "predict.py:2:71: parameter \"seed\" has no default and is not declared in lathe.yaml — run `lathe validate --write` to declare it under inputs: from the signature",
        ])
    }

    @Test("annotation that disagrees with the declared type")
    func annotationMismatch() throws {
        #expect(try check(yaml, "class Predictor:\n    def predict(self, text: int, top_k: int = 1) -> str:\n        return text\n") == [
            "predict.py:2:23: parameter \"text\" is annotated int (integer) but lathe.yaml declares it string (lathe.yaml:3) — make the annotation and the declared type agree",
        ])
    }

    @Test("literal default that disagrees")
    func defaultMismatch() throws {
        #expect(try check(yaml, "class Predictor:\n    def predict(self, text: str, top_k: int = 2) -> str:\n        return text\n") == [
            "predict.py:2:34: parameter \"top_k\" defaults to 2 but lathe.yaml declares default 1 (lathe.yaml:4) — make the two defaults agree",
        ])
    }

    @Test("setup may take only weights")
    func setupParameters() throws {
        #expect(try check(yaml, "class Predictor:\n    def setup(self, weights, device='cpu'): pass\n    def predict(self, text: str, top_k: int = 1) -> str:\n        return text\n") == [
            "predict.py:2:30: setup() takes parameter \"device\"; it may take only `weights` — remove it, and read settings from inputs or files instead",
        ])
    }

    @Test("Python syntax error")
    func syntaxError() throws {
        #expect(try check(yaml, "class Predictor:\n    def predict(self, text: str\n") == [
            "predict.py:2:16: Python syntax error: '(' was never closed — fix the code so `python3 -m py_compile predict.py` passes",
        ])
    }
}

@Suite("converting Cog projects")
struct CogImportTests {
    @Test("cog.yaml and Input(...) annotations become an equivalent lathe.yaml")
    func convert() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": """
            build:
              python_version: "3.11.4"
              python_packages: ["numpy==1.26.4"]
            predict: "predict.py:Predictor"
            """,
            "predict.py": """
            from typing import Iterator, Optional
            from cog import BasePredictor, Input, Path, Secret

            class Predictor(BasePredictor):
                def predict(
                    self,
                    prompt: str = Input(description="Text prompt", min_length=1),
                    steps: int = Input(default=50, ge=1, le=100),
                    scheduler: str = Input(default="ddim", choices=["ddim", "euler"]),
                    image: Path = Input(description="Start image"),
                    mask: Optional[Path] = Input(default=None),
                    token: Secret = Input(description="API token"),
                    scale: float = 7.5,
                ) -> Iterator[str]:
                    yield prompt
            """,
        ])
        defer { try? FileManager.default.removeItem(at: project) }
        let text = try CogImport.convert(project: project)
        let spec = try SpecParser.parse(text)
        #expect(spec.python.description == "3.11")
        #expect(spec.pythonPackages == ["numpy==1.26.4"])
        #expect(spec.inputs.map(\.name) == ["prompt", "steps", "scheduler", "image", "mask", "token", "scale"])
        #expect(spec.input(named: "prompt")?.description == "Text prompt")
        #expect(spec.input(named: "prompt")?.minLength == 1)
        #expect(spec.input(named: "steps")?.default == .int(50))
        #expect(spec.input(named: "steps")?.minimum == 1)
        #expect(spec.input(named: "steps")?.maximum == 100)
        #expect(spec.input(named: "scheduler")?.choices == [.string("ddim"), .string("euler")])
        #expect(spec.input(named: "image")?.type == .file)
        #expect(spec.input(named: "mask")?.nullable == true)
        #expect(spec.input(named: "token")?.type == .secret)
        #expect(spec.input(named: "scale")?.default == .number(7.5))
        #expect(spec.output.type == .iterator && spec.output.items?.type == .string)
        try Data(text.utf8).write(to: project.appendingPathComponent("lathe.yaml"))
        #expect(throws: Never.self) { try PredictorCheck.check(spec, project: project) }
    }

    @Test("Cog's newer BaseRunner with run() and a run: key convert too")
    func convertRunner() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.12\"\n  python_requirements: requirements.txt\nrun: \"run.py:Runner\"\nimage: r8.im/acme/upscaler\n",
            "requirements.txt": "numpy\n",
            "run.py": """
            from typing import Literal
            from cog import BaseRunner, Input, Path

            class Runner(BaseRunner):
                def run(self, image: Path = Input(description="Picture"),
                        scale: Literal[2, 4] = 2,
                        face: bool = Input(default=False, deprecated=True)) -> Path:
                    return image
            """,
        ])
        defer { try? FileManager.default.removeItem(at: project) }
        let spec = try SpecParser.parse(try CogImport.convert(project: project))
        #expect(spec.name == "acme/upscaler")
        #expect(spec.python.description == "3.12")
        #expect(spec.requirements == "requirements.txt")
        #expect(spec.predict == EntryPoint(file: "run.py", symbol: "Runner"))
        #expect(spec.input(named: "scale")?.choices == [.int(2), .int(4)])
        #expect(spec.input(named: "scale")?.default == .int(2))
        #expect(spec.input(named: "face")?.deprecated == true)
        #expect(spec.output.type == .file)
    }
}

@Suite("converting Cog trainers")
struct CogTrainImportTests {
    @Test("cog.yaml's train: becomes train: with the trainer's inputs, and names a missing trainer in a sentence")
    func convertTrain() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.11\"\npredict: \"predict.py:Predictor\"\ntrain: \"train.py:train\"\n",
            "predict.py": "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self, text: str) -> str:\n        return text\n",
            "train.py": """
            from cog import BaseModel, Input, Path

            class TrainingOutput(BaseModel):
                weights: Path

            def train(data: Path = Input(description="Examples"), epochs: int = Input(default=3, ge=1)) -> TrainingOutput:
                return TrainingOutput(weights=Path("w.bin"))
            """,
        ])
        defer { try? FileManager.default.removeItem(at: project) }
        let conversion = try CogImport.conversion(project: project)
        #expect(!conversion.notes.contains { $0.contains("train") }, "\(conversion.notes)")
        let spec = try SpecParser.parse(conversion.text)
        #expect(spec.train?.entry.description == "train.py:train")
        #expect(spec.train?.inputs.map(\.name) == ["data", "epochs"])
        #expect(spec.train?.inputs.first?.type == .file && spec.train?.inputs.first?.description == "Examples")
        #expect(spec.train?.inputs.last?.default == .int(3) && spec.train?.inputs.last?.minimum == 1)
        #expect(throws: Never.self) { try PredictorCheck.check(spec, project: project) }

        try Data("build:\n  python_version: \"3.11\"\npredict: \"predict.py:Predictor\"\ntrain: \"train.py:fit\"\n".utf8)
            .write(to: project.appendingPathComponent("cog.yaml"))
        #expect {
            try CogImport.conversion(project: project)
        } throws: { error in
            "\(error)".contains("train: names fit, which train.py does not define (it defines TrainingOutput, train)")
        }
    }
}
