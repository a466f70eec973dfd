import Foundation
import LatheSpec
import LatheTestSupport
import Testing

@Suite("the lathe command line", .serialized)
struct CommandTests {
    @Test("lathe init writes working projects from both templates")
    func initTemplates() throws {
        let parent = try TestSupport.makeProject([:])
        let plain = parent.appendingPathComponent("my-model")
        let written = try CLI.run(["init", plain.path])
        #expect(written.status == 0, "\(written.stderrText)")
        for file in ["lathe.yaml", "predict.py", ".latheignore", ".github/workflows/lathe.yml"] {
            #expect(FileManager.default.fileExists(atPath: plain.appendingPathComponent(file).path), "\(file)")
        }
        #expect(try String(contentsOf: plain.appendingPathComponent("lathe.yaml"), encoding: .utf8).contains("name: me/my-model"))
        #expect(try CLI.run(["predict", plain.path, "-i", "text=hi", "-i", "excitement=3"]).output == "Hello, hi!!!\n")
        #expect(try CLI.run(["init", plain.path]).output.contains("skipped lathe.yaml"), "existing files are kept")

        #expect(written.output.contains("Next: cd \(plain.path) && lathe predict -i text=hello"), "\(written.output)")
        let built = try CLI.run(["build", plain.path])
        #expect(built.status == 0 && built.stderrText.contains("no weights") && !built.stderrText.contains("file(s)"), "\(built.stderrText)")

        let streaming = parent.appendingPathComponent("streamer")
        let initialized = try CLI.run(["init", streaming.path, "--template", "streaming"])
        #expect(initialized.status == 0)
        // The "Next:" line names the template's own required inputs, and runs as printed.
        #expect(initialized.output.contains("Next: cd \(streaming.path) && lathe predict -i prompt=hello"), "\(initialized.output)")
        #expect(try CLI.run(["predict", "-i", "prompt=hello"], directory: streaming).status == 0)
        let report = try CLI.json(["predict", streaming.path, "-i", "prompt=hi", "-i", "words=3"])
        #expect(report["output"]?.arrayValue?.count == 3)
        #expect(try CLI.run(["init", parent.appendingPathComponent("x").path, "--template", "nope"]).status != 0)
    }

    @Test("a module missing in setup() names the module and python_packages, not 'fix setup()'")
    func missingModuleInSetup() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs: {text: {type: string}}\noutput: {type: string}\n",
            "predict.py": "class Predictor:\n    def setup(self):\n        import lathe_surely_missing_module.sub\n\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        let result = try CLI.run(["predict", project.path, "-i", "text=x"])
        #expect(result.status != 0)
        #expect(result.stderrText.contains("'lathe_surely_missing_module'") && result.stderrText.contains("python_packages: [lathe_surely_missing_module]"),
                "\(result.stderrText)")
        #expect(!result.stderrText.contains("fix setup()"), "\(result.stderrText)")
        // The traceback starts at the model's own frames: none of the runner's.
        #expect(result.stderrText.contains("predict.py") && !result.stderrText.contains("runner.py"), "\(result.stderrText)")
    }

    @Test("what setup() prints is shown by lathe predict")
    func setupLogs() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs: {text: {type: string}}\noutput: {type: string}\n",
            "predict.py": "class Predictor:\n    def setup(self):\n        print('loading the weights once')\n\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        let result = try CLI.run(["predict", project.path, "-i", "text=x"])
        #expect(result.status == 0 && result.output == "x\n", "\(result.stderrText)")
        #expect(result.stderrText.contains("loading the weights once"), "\(result.stderrText)")
    }

    @Test("a failed install is reported once: the installer's output as it ran, then one error line without a doubled prefix")
    func failedInstallOnce() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "python_packages: [lathe-surely-missing-package==1.0]\npredict: predict.py:Predictor\ninputs: {text: {type: string}}\noutput: {type: string}\n",
            "predict.py": "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        // An index nobody serves: the install fails at once, without the network.
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("lathe-install-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: home) }
        let result = try CLI.run(["predict", project.path, "-i", "text=x"], home: home,
                                 environment: ["UV_INDEX_URL": "http://127.0.0.1:9/simple", "UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple",
                                               "PIP_INDEX_URL": "http://127.0.0.1:9/simple"])
        let text = result.stderrText
        #expect(result.status == 1, "\(text)")
        #expect(!text.contains("error: error:") && text.components(separatedBy: "error: installing the model's Python packages failed").count == 2,
                "\(text)")
        #expect(text.hasSuffix("error: installing the model's Python packages failed (the installer's output is above) — check python_packages/requirements in lathe.yaml\n"),
                "\(text)")
        // Every line the installer printed appears once.
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("error: installing") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        #expect(Set(lines).count == lines.count, "\(text)")
    }

    @Test("inputs declared once: an undeclared parameter with a default is an error naming --write, which fills inputs: from the signature and shows the diff")
    func validateWrite() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "# A model.\npredict: predict.py:Predictor\ninputs:\n  text: {type: string, description: What to say}  # mine\n  gone: {type: integer}\n\n# The result.\noutput: {type: string}\n",
            "predict.py": """
            from typing import Annotated
            from cog import Input

            class Predictor:
                def predict(self, text: str, times: int = Input(default=2, ge=1, le=5, description="How often"),
                            joiner: Annotated[str, Input(description="Between copies", choices=["-", "+"])] = "-") -> str:
                    return joiner.join([text] * times)
            """,
        ])
        let refused = try CLI.run(["validate", project.path])
        #expect(refused.status == 1)
        #expect(refused.stderrText.contains("predict.py:5:34: parameter \"times\" is not declared in lathe.yaml, so no caller can set it (it would always be its default) — run `lathe validate --write`"),
                "\(refused.stderrText)")
        let written = try CLI.run(["validate", "--write", project.path])
        #expect(written.status == 0, "\(written.stderrText)")
        #expect(written.output.contains("-  gone: {type: integer}\n+  times: {type: integer, description: \"How often\", default: 2, minimum: 1, maximum: 5}\n"
                                        + "+  joiner: {type: string, description: \"Between copies\", default: \"-\", choices: [\"-\",\"+\"]}\n"), "\(written.output)")
        let text = try String(contentsOf: project.appendingPathComponent("lathe.yaml"), encoding: .utf8)
        #expect(text.hasPrefix("# A model.\npredict: predict.py:Predictor\ninputs:\n  text: {type: string, description: What to say}  # mine\n  times:"), "\(text)")
        #expect(text.hasSuffix("\n\n# The result.\noutput: {type: string}\n"), "\(text)")
        let again = try CLI.run(["validate", "--write", project.path])
        #expect(again.status == 0 && again.output.hasPrefix("lathe.yaml already declares the inputs of Predictor.predict()"), "\(again.output)")
        let spec = try SpecParser.load(project: project)
        #expect(spec.input(named: "joiner")?.choices == [.string("-"), .string("+")] && spec.input(named: "times")?.maximum == 5)
        let ran = try CLI.run(["predict", project.path, "-i", "text=a", "-i", "times=3", "-i", "joiner=+"])
        #expect(ran.status == 0 && ran.output == "a+a+a\n", "\(ran.stderrText)")
    }

    @Test("--from-cog carries concurrency.max, train: and system_packages and names, on the terminal and in lathe.yaml, every key it cannot carry")
    func fromCogNamesWhatItDrops() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": """
            build:
              gpu: true
              cuda: "12.1"
              python_version: "3.11"
              python_packages: []
              system_packages: [ffmpeg, libsndfile1]
              run: ["echo hi"]
            image: r8.im/acme/voice
            predict: "predict.py:Predictor"
            train: "train.py:train"
            concurrency:
              max: 4
              default_target: 2
            environment: ["HF_HOME=/src/hf"]
            """,
            "predict.py": "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    async def predict(self, text: str) -> str:\n        return text\n",
            "train.py": "from cog import Input, Path\n\ndef train(epochs: int = Input(default=2, ge=1)) -> Path:\n    return Path(\"w.bin\")\n",
        ])
        let converted = try CLI.run(["init", "--from-cog", project.path])
        #expect(converted.status == 0, "\(converted.stderrText)")
        let spec = try SpecParser.load(project: project)
        #expect(spec.concurrency == 4 && spec.name == "acme/voice" && spec.systemPackages == ["ffmpeg", "libsndfile1"])
        #expect(spec.train?.entry.description == "train.py:train" && spec.train?.inputs.first?.minimum == 1)
        let notes = converted.stderrText.split(separator: "\n").filter { $0.hasPrefix("note: ") }
        #expect(notes.count == 5, "\(converted.stderrText)")
        for expected in ["build.gpu: true is not a lathe.yaml key",
                         "build.cuda is not carried", "build.run is not carried",
                         "environment: is not carried", "concurrency.default_target is not carried"] {
            #expect(notes.contains { $0.contains(expected) }, "\(expected): \(converted.stderrText)")
        }
        let text = try String(contentsOf: project.appendingPathComponent("lathe.yaml"), encoding: .utf8)
        #expect(text.contains("\nsystem_packages: [\"ffmpeg\", \"libsndfile1\"]\n") && text.contains("\nconcurrency: 4\n"), "\(text)")
        #expect(text.contains("\n# build.cuda is not carried"), "\(text)")
    }

    @Test("--from-cog adds what cog itself brings where the code imports it, and the converted project runs")
    func fromCogAddsWhatCogBrings() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.11\"\npredict: \"predict.py:Predictor\"\n",
            "predict.py": """
            import requests
            from cog import BasePredictor

            import helpers

            class Predictor(BasePredictor):
                def predict(self, text: str) -> str:
                    return helpers.shout(text) + " " + requests.__name__
            """,
            "helpers.py": "import yaml\n\ndef shout(text):\n    return yaml.safe_load(text).upper()\n",
        ])
        let converted = try CLI.run(["init", "--from-cog", project.path])
        #expect(converted.status == 0, "\(converted.stderrText)")
        let spec = try SpecParser.load(project: project)
        #expect(spec.pythonPackages == ["requests", "PyYAML"], "\(spec.pythonPackages)")
        #expect(converted.stderrText.contains("note: python_packages gains requests: predict.py imports requests, which Cog images have because cog depends on it"),
                "\(converted.stderrText)")
        #expect(converted.stderrText.contains("python_packages gains PyYAML: helpers.py imports yaml"), "\(converted.stderrText)")
        let ran = try CLI.run(["predict", project.path, "-i", "text=hi"])
        #expect(ran.output == "HI requests\n", "\(ran.stderrText)")
        #expect(try CLI.run(["validate", project.path]).stderrText == "", "nothing left to warn about")
    }

    @Test("system_packages: a Debian package's binary on the model's PATH, fetched into a prefix of its own; an unknown one named")
    func systemPackages() throws {
        let predict = """
        import shutil, subprocess

        class Predictor:
            def predict(self) -> str:
                ran = subprocess.run(["tree", "--version"], capture_output=True, text=True)
                return shutil.which("tree") + " " + ran.stdout.split()[1]
        """
        let home = try TestSupport.makeProject([:])
        let project = try TestSupport.makeProject([
            "lathe.yaml": "system_packages: [tree]\npredict: predict.py:Predictor\ninputs: {}\noutput: {type: string}\n",
            "predict.py": predict,
        ])
        let ran = try CLI.run(["predict", project.path], home: home)
        #expect(ran.status == 0, "\(ran.stderrText)")
        // From the prefix, not the host (which has no tree), with what apt fetched logged.
        #expect(ran.output.hasPrefix(home.appendingPathComponent("sysroots").path + "/") && ran.output.contains("/usr/bin/tree v"), "\(ran.output)")
        #expect(ran.stderrText.contains("System packages tree: fetching tree"), "\(ran.stderrText)")
        // Cached per package set: the second run fetches nothing.
        let again = try CLI.run(["predict", project.path], home: home)
        #expect(again.output == ran.output && !again.stderrText.contains("fetching"), "\(again.stderrText)")

        let unknown = try TestSupport.makeProject([
            "lathe.yaml": "system_packages: [tree, lathe-no-such-package]\npredict: predict.py:Predictor\ninputs: {}\noutput: {type: string}\n",
            "predict.py": predict,
        ])
        let failed = try CLI.run(["predict", unknown.path], home: home)
        #expect(failed.status == 1)
        #expect(failed.stderrText.contains("error: system package \"lathe-no-such-package\" was not found in this machine's apt sources"),
                "\(failed.stderrText)")
        let option = try TestSupport.makeProject([
            "lathe.yaml": "system_packages: [\"--allow-unauthenticated\"]\npredict: predict.py:Predictor\ninputs: {}\noutput: {type: string}\n",
            "predict.py": predict,
        ])
        let refused = try CLI.run(["validate", option.path])
        #expect(refused.status == 1 && refused.stderrText.contains("is not a Debian package name"), "\(refused.stderrText)")
    }

    @Test("--from-cog keeps a python_version this machine lacks and says how to get it or change it")
    func fromCogMissingPython() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.5\"\npredict: \"predict.py:Predictor\"\n",
            "predict.py": "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        let converted = try CLI.run(["init", "--from-cog", project.path])
        #expect(converted.status == 0, "\(converted.stderrText)")
        #expect(converted.stderrText.contains("note: python_version 3.5 is kept, but this machine has no Python 3.5: install it (apt-get install python3.5, "
                                              + "or uv python install 3.5), or change python: in lathe.yaml to an installed version"), "\(converted.stderrText)")
        #expect(try String(contentsOf: project.appendingPathComponent("lathe.yaml"), encoding: .utf8).contains("python: \"3.5\"\n"))
    }

    @Test("lathe validate warns, with the fix, about a module-level import nothing provides")
    func validateWarnsAboutImports() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "python_packages: [Pillow]\npredict: predict.py:Predictor\ninputs: {text: {type: string}}\noutput: {type: string}\n",
            "predict.py": """
            import json, os
            from PIL import Image
            import cog
            import helpers
            import requests
            try:
                import simplejson
            except ImportError:
                simplejson = None
            from lathe_nowhere.sub import thing

            class Predictor:
                def predict(self, text: str) -> str:
                    import torch
                    return text
            """,
            "helpers.py": "",
        ])
        let result = try CLI.run(["validate", project.path])
        #expect(result.status == 0, "a warning, not an error: \(result.stderrText)")
        let warnings = result.stderrText.split(separator: "\n").map(String.init)
        #expect(warnings == [
            "predict.py:5:1: warning: requests is imported, but it is not in the standard library, the project, or a listed requirement "
                + "(Cog images have it because the cog package depends on it; Lathe's do not) — add requests to python_packages in lathe.yaml",
            "predict.py:10:1: warning: lathe_nowhere is imported, but it is not in the standard library, the project, or a listed requirement "
                + "— add the package that provides lathe_nowhere to python_packages in lathe.yaml",
        ], "\(result.stderrText)")
        let json = try CLI.json(["validate", project.path, "--json"])
        #expect(json["valid"] == .bool(true) && json["warnings"]?.arrayValue?.count == 2)
    }

    @Test("lathe init --from-cog converts a Cog project that then runs without cog installed")
    func fromCog() throws {
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.11\"\npredict: \"predict.py:Predictor\"\n",
            "predict.py": """
            from cog import BasePredictor, Input

            class Predictor(BasePredictor):
                def setup(self):
                    self.prefix = "cog"

                def predict(self, text: str = Input(description="Words", min_length=1),
                            times: int = Input(default=2, ge=1, le=5),
                            joiner: str = Input(default="-", choices=["-", "+"])) -> str:
                    return self.prefix + ":" + joiner.join([text] * times)
            """,
        ])
        let converted = try CLI.run(["init", "--from-cog", project.path])
        #expect(converted.status == 0, "\(converted.stderrText)")
        let spec = try SpecParser.load(project: project)
        #expect(spec.inputs.map(\.name) == ["text", "times", "joiner"])
        #expect(spec.input(named: "times")?.maximum == 5)
        #expect(try CLI.run(["predict", project.path, "-i", "text=ab", "-i", "joiner=+"]).output == "cog:ab+ab\n")
        let rejected = try CLI.run(["predict", project.path, "-i", "text=ab", "-i", "times=9"])
        #expect(rejected.status == 1)
        #expect(rejected.stderrText == "error: input \"times\": is above maximum 5\n")
    }

    @Test("lathe train runs a converted Cog trainer in the sandbox and writes its weights, from the project and from a built version")
    func train() throws {
        let home = try TestSupport.makeProject([:])
        let project = try TestSupport.makeProject([
            "cog.yaml": "build:\n  python_version: \"3.11\"\npredict: \"predict.py:Predictor\"\ntrain: \"train.py:Trainer\"\n",
            "predict.py": "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self, text: str) -> str:\n        return text\n",
            "letters.txt": "xyz",
            "train.py": """
            from cog import BaseModel, Input, Path

            class TrainingOutput(BaseModel):
                weights: Path

            class Trainer:
                def setup(self):
                    self.letters = open("letters.txt").read()

                def predict(self, n: int) -> str:
                    raise RuntimeError("a trainer's predict is not its train")

                def train(self, n: int = Input(description="Repeats", default=2, ge=1, le=9)) -> TrainingOutput:
                    print("training", n)
                    with open("weights.bin", "w") as handle:  # where it stands, as Cog trainers write
                        handle.write(self.letters * n)
                    return TrainingOutput(weights=Path("weights.bin"))
            """,
        ])
        #expect(try CLI.run(["init", "--from-cog", project.path]).status == 0)
        let validated = try CLI.run(["validate", project.path, "--import"], home: home)
        #expect(validated.output.contains("; train.py agrees with train: (1 inputs); the code imports"), "\(validated.output)\(validated.stderrText)")
        let weights = home.appendingPathComponent("trained.bin")
        let trained = try CLI.run(["train", project.path, "-i", "n=3", "-o", weights.path], home: home)
        #expect(trained.status == 0, "\(trained.stderrText)")
        #expect(trained.stderrText.contains("training 3\n"), "\(trained.stderrText)")
        #expect(try String(contentsOf: weights, encoding: .utf8) == "xyzxyzxyz")
        #expect(try JSONDecoder().decode([String: JSONValue].self, from: trained.stdout)["weights"] == .string(weights.path))
        // The project stays as it was: the trainer wrote in a folder of its own.
        #expect(!FileManager.default.fileExists(atPath: project.appendingPathComponent("weights.bin").path))

        let refused = try CLI.run(["train", project.path, "-i", "n=10"], home: home)
        #expect(refused.status == 1 && refused.stderrText == "error: input \"n\": is above maximum 9\n", "\(refused.stderrText)")

        // A built version carries train: and trains the same way.
        #expect(try CLI.run(["build", project.path, "-t", "acme/letters:v1"], home: home).status == 0)
        let fromVersion = try CLI.run(["train", "acme/letters:v1", "--json", "-o", home.appendingPathComponent("v1.bin").path], home: home)
        let report = try JSONDecoder().decode([String: JSONValue].self, from: fromVersion.stdout)
        #expect(report["status"] == .string("succeeded") && report["logs"] == .string("training 2\n"), "\(fromVersion.stderrText)")
        #expect(try String(contentsOf: home.appendingPathComponent("v1.bin"), encoding: .utf8) == "xyzxyz")

        // A model without train: says how to add one.
        let plain = try TestSupport.makeProject(["lathe.yaml": "predict: p.py:predict\ninputs: {}\noutput: {type: string}\n",
                                                 "p.py": "def predict() -> str:\n    return 'x'\n"])
        let none = try CLI.run(["train", plain.path], home: home)
        #expect(none.status == 1 && none.stderrText.hasPrefix("error: this model declares no train: entry point — add to lathe.yaml"), "\(none.stderrText)")
    }

    @Test("build --json, an unchanged rebuild reusing weights, images, inspect, -o tar, rm")
    func buildAndStore() throws {
        let home = try TestSupport.makeProject([:])
        let sample = TestSupport.sample("classifier").path
        let first = try CLI.json(["build", sample, "-t", "acme/classifier:v1"], home: home)
        let version = try #require(first["version"]?.stringValue)
        #expect(version.count == 64 && version.allSatisfy(\.isHexDigit))
        #expect(first["manifest"]?.stringValue?.hasPrefix("sha256:") == true)
        let layers = try #require(first["layers"]?.arrayValue)
        #expect(layers.map { $0["role"] } == [.string("code"), .string("weights")])
        let weightsSize = try FileManager.default.attributesOfItem(atPath: sample + "/weights/model.npz")[.size] as? Int
        #expect(layers[1]["size"] == .int(try #require(weightsSize)))
        #expect(layers[1]["reused"] == .bool(false))
        let second = try CLI.json(["build", sample, "-t", "acme/classifier:v1"], home: home)
        #expect(second["version"] == first["version"])
        #expect(second["layers"]?.arrayValue?[1]["reused"] == .bool(true))

        let images = try CLI.run(["images"], home: home)
        #expect(images.output.contains("acme/classifier:v1"))
        #expect(images.output.contains(String(version.prefix(12))))
        let inspect = try JSONDecoder().decode([String: JSONValue].self, from: try CLI.run(["inspect", "acme/classifier:v1"], home: home).stdout)
        #expect(inspect["version"]?.stringValue == version)
        #expect(inspect["manifest"]?["artifactType"] == .string("application/vnd.lathe.model.v1"))
        #expect(inspect["config"]?["openapi_schema"]?["components"]?["schemas"]?["Input"]?["required"] == .array([.string("text")]))

        let tar = home.appendingPathComponent("classifier.tar")
        #expect(try CLI.run(["build", sample, "-t", "acme/classifier:v1", "-o", tar.path], home: home).status == 0)
        let skopeo = try TestSupport.run("skopeo", ["inspect", "--raw", "oci-archive:\(tar.path):acme/classifier:v1"])
        #expect(skopeo.status == 0, "\(skopeo.stderrText)")
        #expect(skopeo.output.contains(version), "the exported manifest names the config, whose digest is the version")

        #expect(try CLI.run(["predict", "acme/classifier:v1", "-i", "text=what a wonderful day"], home: home).output.contains("positive"))
        #expect(try CLI.run(["rm", "acme/classifier:v1"], home: home).output == "removed acme/classifier:v1\n")
        #expect(try CLI.run(["inspect", "acme/classifier:v1"], home: home).status == 1)
        let blobs = try FileManager.default.contentsOfDirectory(atPath: home.appendingPathComponent("store/blobs/sha256").path)
        #expect(blobs.isEmpty, "unreferenced blobs are deleted")
    }

    @Test("invalid inputs are rejected per field before any environment is built or model started")
    func inputsCheckedFirst() throws {
        let home = try TestSupport.makeProject([:])
        let result = try CLI.run(["predict", TestSupport.sample("image").path, "-i", "effect=blur", "-i", "strength=2", "-i", "colour=red"], home: home)
        #expect(result.status == 1)
        #expect(result.stderrText == """
        error: input "colour": is not an input of this model (inputs: image, effect, strength, caption)
        error: input "image": is required
        error: input "effect": must be one of ["grayscale", "invert", "sepia", "posterize"]
        error: input "strength": is above maximum 1

        """)
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent("envs").path))
        let typed = try CLI.run(["predict", TestSupport.sample("image").path, "-i", "strength=lots"], home: home)
        #expect(typed.stderrText == "error: input \"strength\": \"lots\" is not a number\n")
    }

    @Test("validate and build report spec and predictor mistakes with their place; a weights pin mismatch fails the build")
    func validateAndPins() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n  text: {type: string}\noutput: {type: string}\nweights:\n  - path: w.bin\n    sha256: \(String(repeating: "0", count: 64))\n",
            "predict.py": "class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
            "w.bin": "weights",
        ])
        let valid = try CLI.run(["validate", project.path])
        #expect(valid.status == 0)
        #expect(valid.output.hasPrefix("ok: lathe.yaml and predict.py agree"))
        let build = try CLI.run(["build", project.path])
        #expect(build.status == 1)
        #expect(build.stderrText == "error: lathe.yaml:6:11: weights \"w.bin\" has sha256 9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c but the pin says \(String(repeating: "0", count: 64)) — update sha256: if the new file is intended, or restore the pinned file\n")
        try FileManager.default.removeItem(at: project.appendingPathComponent("w.bin"))
        let missing = try CLI.run(["build", project.path])
        #expect(missing.stderrText == "error: lathe.yaml:6:11: weights path \"w.bin\" does not exist — check the path (relative to lathe.yaml), or create the file first\n")
        try Data("predict: predict.py:Predictor\ninputs:\n  txt: {type: string}\noutput: string\n".utf8).write(to: project.appendingPathComponent("lathe.yaml"))
        let mismatch = try CLI.run(["validate", project.path])
        #expect(mismatch.status == 1)
        #expect(mismatch.stderrText == """
        error: predict.py:2:5: predict() has no parameter "txt", which lathe.yaml declares (lathe.yaml:3) — add `txt` to predict() or remove it from inputs:
        error: predict.py:2:23: parameter "text" has no default and is not declared in lathe.yaml — run `lathe validate --write` to declare it under inputs: from the signature

        """)
    }

    @Test("validate --import imports the predictor in its sandboxed environment and points at the failing line")
    func validateImport() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n  text: {type: string}\noutput: {type: string}\n",
            "predict.py": "import json\nimport notapackage\nclass Predictor:\n    def predict(self, text: str) -> str:\n        return text\n",
        ])
        let failed = try CLI.run(["validate", "--import", project.path])
        #expect(failed.status == 1)
        #expect(failed.stderrText.hasSuffix("error: predict.py:2:1: importing predict.py failed: ModuleNotFoundError: No module named 'notapackage' — add the package to python_packages in lathe.yaml\n"))
        let ok = try CLI.run(["validate", "--import", TestSupport.sample("classifier").path])
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(ok.output.contains("the code imports"))
    }

    @Test("--json-input and data URIs feed inputs")
    func jsonInputAndDataURI() throws {
        let folder = try TestSupport.makeProject([:])
        let png = try Data(contentsOf: TestSupport.sample("image").appendingPathComponent("example.png"))
        let inputs = folder.appendingPathComponent("inputs.json")
        try JSONEncoder().encode(["image": "data:image/png;base64," + png.base64EncodedString(), "effect": "grayscale"]).write(to: inputs)
        let output = folder.appendingPathComponent("gray.png")
        let report = try CLI.json(["predict", TestSupport.sample("image").path, "--json-input", inputs.path, "-i", "strength=0.5", "-o", output.path])
        #expect(report["status"] == .string("succeeded"), "\(report)")
        #expect(report["output"] == .string(output.path))
        #expect(report["logs"]?.stringValue?.contains("grayscale at 0.50 on a 64x48 image") == true)
    }

    @Test("Ctrl-C cancels the running prediction; --timeout stops a hung one")
    func cancelAndTimeout() throws {
        let project = try TestSupport.makeProject([
            "lathe.yaml": "predict: predict.py:Predictor\ninputs:\n  seconds: {type: integer}\noutput: {type: string}\n",
            "predict.py": "import time\nclass Predictor:\n    def predict(self, seconds: int) -> str:\n        print('sleeping', flush=True)\n        time.sleep(seconds)\n        return 'woke'\n",
        ])
        let (process, _, err) = try CLI.start(["predict", project.path, "-i", "seconds=60"])
        // Wait for the model to be running (it logs), then press Ctrl-C.
        let reader = err.fileHandleForReading
        var seen = Data()
        let deadline = Date().addingTimeInterval(30)
        while !String(decoding: seen, as: UTF8.self).contains("sleeping") && Date() < deadline {
            seen.append(reader.availableData)
        }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        seen.append(reader.readDataToEndOfFile())
        #expect(process.terminationStatus == 130)
        #expect(String(decoding: seen, as: UTF8.self).contains("prediction canceled"))

        let started = Date()
        let timedOut = try CLI.json(["predict", project.path, "-i", "seconds=60", "--timeout", "1"])
        #expect(timedOut["status"] == .string("failed"))
        #expect(timedOut["error"] == .string("Prediction timed out"))
        #expect(Date().timeIntervalSince(started) < 15)
    }
}
