"""Cog projects run unchanged (issue 22): the `cog` module Lathe provides exports what the
current `cog` release on PyPI exports, and emit_metric / current_scope() / async setup() /
ExperimentalFeatureWarning behave, not just import."""
import ast
import glob
import importlib.util
import os
import subprocess
import sys
import zipfile

import httpx

from conftest import LATHE, ROOT

RUNNER = os.path.join(ROOT, "Sources", "LatheRunner", "Resources", "runner.py")


def public_names(source):
    """Top-level public names a module's source defines (classes, functions, assignments)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_the_provided_cog_module_exports_what_the_real_cog_exports(tmp_path):
    # The real package, as PyPI has it now (its wheel only: its own dependencies are not needed
    # to read what it exports), so a new Cog release shows up here as a failing test.
    fetched = subprocess.run([sys.executable, "-m", "pip", "download", "cog", "--no-deps", "--only-binary", ":all:", "-d", str(tmp_path), "-q"],
                             capture_output=True, text=True)
    if fetched.returncode != 0:  # this environment's pip may be elsewhere
        fetched = subprocess.run(["python3", "-m", "pip", "download", "cog", "--no-deps", "--only-binary", ":all:", "-d", str(tmp_path), "-q"],
                                 capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr
    wheel = zipfile.ZipFile(glob.glob(str(tmp_path / "cog-*.whl"))[0])
    init = wheel.read("cog/__init__.py").decode()
    real_all = next(ast.literal_eval(node.value) for node in ast.parse(init).body
                    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets))
    real_types = public_names(wheel.read("cog/types.py").decode())

    spec = importlib.util.spec_from_file_location("lathe_runner", RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    saved = {name: sys.modules.pop(name, None) for name in ("cog", "cog.types")}
    try:
        runner.install_cog_shim()
        provided, provided_types = sys.modules["cog"], sys.modules["cog.types"]
        assert set(provided.__all__) == set(real_all), f"missing {set(real_all) - set(provided.__all__)}, extra {set(provided.__all__) - set(real_all)}"
        assert all(hasattr(provided, name) for name in real_all)
        missing = {name for name in real_types if not hasattr(provided_types, name)}
        assert not missing, f"cog.types lacks {missing}"
        assert issubclass(provided.ExperimentalFeatureWarning, Warning)
    finally:
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module
            else:
                sys.modules.pop(name, None)


COG_MODEL = '''import asyncio
import warnings

from cog import BasePredictor, ExperimentalFeatureWarning, Input, current_scope, emit_metric
from cog.types import URLFile  # noqa: F401 - imports as in current Cog projects

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)


class Predictor(BasePredictor):
    async def setup(self):
        await asyncio.sleep(0)
        self.ready = "yes"

    def predict(self, text: str = Input(description="Words")) -> str:
        emit_metric("tokens", 3)
        scope = current_scope()
        scope.record_metric("temperature", 0.7)
        scope.metrics["steps"] = 2
        scope.metrics.record("logprobs", -1.5, mode="append")
        scope.metrics.record("logprobs", -0.5, mode="append")
        scope.record_metric("bad", "not a number")
        return f"{self.ready}: {text} [{scope.context.get('tenant', '-')}]"
'''


def test_cog_metrics_async_setup_and_warnings_work_in_a_prediction(server, tmp_path):
    folder = tmp_path / "cogstyle"
    folder.mkdir()
    (folder / "lathe.yaml").write_text('python: "3.11"\npredict: predict.py:Predictor\ninputs:\n  text: {type: string, description: Words}\noutput: {type: string}\n')
    (folder / "predict.py").write_text(COG_MODEL)
    pushed = subprocess.run([LATHE, "push", str(folder), "alice/cogstyle"], capture_output=True, text=True, env=server.env)
    assert pushed.returncode == 0, pushed.stderr
    headers = {"Authorization": f"Bearer {server.token}", "Prefer": "wait"}
    done = httpx.post(f"{server.url}/v1/models/alice/cogstyle/predictions", json={"input": {"text": "hi"}, "context": {"tenant": "acme"}},
                      headers=headers, timeout=120).json()
    # current_scope().context is the request's `context` (Cog's HTTP API field), never echoed back.
    assert done["status"] == "succeeded" and done["output"] == "yes: hi [acme]", done
    assert "context" not in done
    plain = httpx.post(f"{server.url}/v1/models/alice/cogstyle/predictions", json={"input": {"text": "hi"}}, headers=headers, timeout=120).json()
    assert plain["output"] == "yes: hi [-]", plain
    bad = httpx.post(f"{server.url}/v1/models/alice/cogstyle/predictions", json={"input": {"text": "hi"}, "context": {"tenant": 7}}, headers=headers)
    assert bad.status_code == 400 and "context.tenant must be a string" in bad.text, bad.text
    metrics = done["metrics"]
    assert metrics["tokens"] == 3 and metrics["temperature"] == 0.7 and metrics["steps"] == 2, metrics
    assert metrics["logprobs"] == [-1.5, -0.5] and "predict_time" in metrics and "bad" not in metrics, metrics
    assert "metric 'bad' ignored" in done["logs"], done["logs"]


SYSTEM_MODEL = '''import shutil, subprocess


class Predictor:
    def predict(self) -> str:
        ran = subprocess.run(["tree", "--version"], capture_output=True, text=True)
        return shutil.which("tree") + " " + ran.stdout.split()[1]
'''


def test_system_packages_reach_the_model_on_the_registry_and_an_unknown_one_fails_the_boot_with_its_name(server, tmp_path):
    """`system_packages:` (Cog's build.system_packages): fetched with the machine's apt sources
    into a prefix of their own, inside the build sandbox; the model calls the binary."""
    headers = {"Authorization": f"Bearer {server.token}", "Prefer": "wait"}
    for name, packages in (("systree", "[tree]"), ("sysbad", "[tree, lathe-no-such-package]")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "lathe.yaml").write_text(f'python: "3.11"\nsystem_packages: {packages}\npredict: predict.py:Predictor\ninputs: {{}}\noutput: {{type: string}}\n')
        (folder / "predict.py").write_text(SYSTEM_MODEL)
        pushed = subprocess.run([LATHE, "push", str(folder), f"alice/{name}"], capture_output=True, text=True, env=server.env)
        assert pushed.returncode == 0, pushed.stderr
    done = httpx.post(f"{server.url}/v1/models/alice/systree/predictions", json={"input": {}}, headers=headers, timeout=180).json()
    assert done["status"] == "succeeded", done
    path, version = done["output"].split()
    assert "/sysroots/" in path and path.endswith("/usr/bin/tree") and version.startswith("v"), done["output"]
    failed = httpx.post(f"{server.url}/v1/models/alice/sysbad/predictions", json={"input": {}}, headers=headers, timeout=180).json()
    for _ in range(60):
        if failed["status"] in ("failed", "succeeded", "canceled"):
            break
        import time
        time.sleep(1)
        failed = httpx.get(f"{server.url}/v1/predictions/{failed['id']}", headers=headers).json()
    assert failed["status"] == "failed" and 'system package "lathe-no-such-package" was not found' in (failed["error"] or ""), failed


ASYNC_COG_MODEL = '''import asyncio
import warnings

from cog import AsyncConcatenateIterator, BasePredictor, ExperimentalFeatureWarning, Input, current_scope, emit_metric
from cog.types import Path as CogPath  # noqa: F401 - imported as current Cog projects do

warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)


class Predictor(BasePredictor):
    async def setup(self):
        await asyncio.sleep(0)
        self.greeting = "hello"

    async def predict(self, name: str = Input(description="Who")) -> AsyncConcatenateIterator[str]:
        emit_metric("words", 3)
        tenant = current_scope().context.get("tenant", "nobody")
        for word in (self.greeting, " ", name, " from ", tenant):
            await asyncio.sleep(0)
            yield word
'''


def test_a_current_cog_style_async_predictor_runs_with_lathe_predict_and_the_official_client(server, tmp_path):
    folder = tmp_path / "asynccog"
    folder.mkdir()
    (folder / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    (folder / "predict.py").write_text(ASYNC_COG_MODEL)
    converted = subprocess.run([LATHE, "init", "--from-cog", str(folder)], capture_output=True, text=True, env=server.env)
    assert converted.returncode == 0, converted.stderr
    local = subprocess.run([LATHE, "predict", str(folder), "-i", "name=ada"], capture_output=True, text=True, env=server.env)
    assert local.returncode == 0 and local.stdout.strip() == "hello ada from nobody", local.stdout + local.stderr
    pushed = subprocess.run([LATHE, "push", str(folder), "alice/asynccog"], capture_output=True, text=True, env=server.env)
    assert pushed.returncode == 0, pushed.stderr
    client = server.client()
    output = client.run("alice/asynccog", input={"name": "ada"})
    assert "".join(output) == "hello ada from nobody", output
    prediction = client.predictions.list().results[0]
    prediction.reload()
    assert prediction.metrics["words"] == 3, prediction.metrics
    # The request's context reaches current_scope().context (the official client has no field for it).
    done = httpx.post(f"{server.url}/v1/models/alice/asynccog/predictions", json={"input": {"name": "ada"}, "context": {"tenant": "acme"}},
                      headers={"Authorization": f"Bearer {server.token}", "Prefer": "wait"}, timeout=120).json()
    assert "".join(done["output"]) == "hello ada from acme", done


def test_bad_cog_projects_get_a_sentence(server, tmp_path):
    cases = {
        "notyaml": ("build: [unclosed\n", "cog.yaml"),
        "badtarget": ('predict: "predict.py:Nowhere"\n', "Nowhere"),
        "zeroconcurrency": ('predict: "predict.py:Predictor"\nconcurrency:\n  max: 0\n', "concurrency.max"),
    }
    for name, (cog, expected) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cog.yaml").write_text(cog)
        (folder / "predict.py").write_text("from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self, text: str) -> str:\n        return text\n")
        converted = subprocess.run([LATHE, "init", "--from-cog", str(folder)], capture_output=True, text=True, env=server.env)
        assert converted.returncode == 1, (name, converted.stdout, converted.stderr)
        lines = converted.stderr.strip().split("\n")
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0] and "Traceback" not in converted.stderr, (name, converted.stderr)


COG_TRAINER = '''from cog import BaseModel, Input, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(word: str = Input(description="What the tuned model says"), times: int = Input(default=2, ge=1, le=5)) -> TrainingOutput:
    with open("weights.txt", "w") as handle:  # where it stands, as Cog trainers write
        handle.write(" ".join([word] * times))
    return TrainingOutput(weights=Path("weights.txt"))
'''

COG_TUNABLE = '''from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self, weights=None):
        self.said = open(weights).read() if weights else "untrained"

    def predict(self, name: str = Input(description="Who")) -> str:
        return self.said + ", " + name
'''


def test_a_cog_trainer_converts_trains_locally_and_its_trained_version_runs_on_the_registry(server, tmp_path):
    """Cog's `train:` is carried by --from-cog; `lathe train -t` makes a version whose
    setup(weights) gets the trained weights, and that version pushes and runs like any other."""
    folder = tmp_path / "tunable"
    folder.mkdir()
    (folder / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\ntrain: "train.py:train"\n')
    (folder / "predict.py").write_text(COG_TUNABLE)
    (folder / "train.py").write_text(COG_TRAINER)
    converted = subprocess.run([LATHE, "init", "--from-cog", str(folder)], capture_output=True, text=True, env=server.env)
    assert converted.returncode == 0 and "train" not in converted.stderr, converted.stderr
    assert "train:\n  entry: \"train.py:train\"\n  inputs:\n    word: {type: string, description: \"What the tuned model says\"}" in (folder / "lathe.yaml").read_text()
    weights = tmp_path / "trained.txt"
    trained = subprocess.run([LATHE, "train", str(folder), "-i", "word=hola", "-i", "times=3", "-o", str(weights), "-t", "alice/tunable:tuned", "--json"],
                             capture_output=True, text=True, env=server.env)
    assert trained.returncode == 0, trained.stderr
    report = __import__("json").loads(trained.stdout)
    assert report["status"] == "succeeded" and len(report["trained_version"]) == 64, report
    assert weights.read_text() == "hola hola hola"
    local = subprocess.run([LATHE, "predict", "alice/tunable:tuned", "-i", "name=ada"], capture_output=True, text=True, env=server.env)
    assert local.returncode == 0 and local.stdout.strip() == "hola hola hola, ada", local.stdout + local.stderr
    untrained = subprocess.run([LATHE, "predict", str(folder), "-i", "name=ada"], capture_output=True, text=True, env=server.env)
    assert untrained.stdout.strip() == "untrained, ada", untrained.stdout + untrained.stderr
    pushed = subprocess.run([LATHE, "push", "alice/tunable:tuned", "alice/tunable", "--json"], capture_output=True, text=True, env=server.env)
    assert pushed.returncode == 0, pushed.stderr
    assert __import__("json").loads(pushed.stdout)["version"] == report["trained_version"], pushed.stdout
    client = server.client()
    assert client.run("alice/tunable", input={"name": "bo"}) == "hola hola hola, bo"
    version = client.models.get("alice/tunable").versions.get(report["trained_version"])
    assert version.id == report["trained_version"]


def test_trainings_through_the_official_client_make_a_version_of_the_destination(server, tmp_path):
    """Replicate's trainings API on the registry: trainings.create runs the version's train: on
    the fleet; its output {version, weights} names a new version of the destination, which
    runs with the trained weights. Bad destinations, inputs and untrainable versions get a
    sentence."""
    import time

    import replicate
    import pytest
    folder = tmp_path / "trainable"
    folder.mkdir()
    (folder / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\ntrain: "train.py:train"\n')
    (folder / "predict.py").write_text(COG_TUNABLE)
    (folder / "train.py").write_text(COG_TRAINER)
    assert subprocess.run([LATHE, "init", "--from-cog", str(folder)], capture_output=True, text=True, env=server.env).returncode == 0
    pushed = subprocess.run([LATHE, "push", str(folder), "alice/trainable", "--json"], capture_output=True, text=True, env=server.env)
    assert pushed.returncode == 0, pushed.stderr
    base = __import__("json").loads(pushed.stdout)["version"]
    client = server.client()
    client.models.create(owner="alice", name="trained", visibility="private", hardware="cpu")

    training = client.trainings.create(version=f"alice/trainable:{base}", input={"word": "ciao", "times": 2}, destination="alice/trained")
    assert training.status in ("starting", "processing") and training.destination == "alice/trained" and training.version == base
    for _ in range(240):
        if training.status in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
        training.reload()
    assert training.status == "succeeded", (training.status, training.error, training.logs)
    made = training.output["version"]
    assert made.startswith("alice/trained:") and training.output["weights"].startswith(server.url), training.output
    assert client.run(made, input={"name": "bo"}) == "ciao ciao, bo"
    assert client.run("alice/trained", input={"name": "bo"}) == "ciao ciao, bo"  # the destination's latest
    assert client.run(f"alice/trainable:{base}", input={"name": "bo"}) == "untrained, bo"
    assert [t.id for t in client.trainings.list().results] == [training.id]
    assert training.id not in [p.id for p in client.predictions.list().results]
    # The config the training ran under is no version anyone sees.
    assert [v.id for v in client.models.get("alice/trainable").versions.list()] == [base]
    assert httpx.get(f"{server.url}/v1/trainings/{training.id}", headers={"Authorization": f"Bearer {server.bob}"}).status_code == 404
    assert httpx.get(f"{server.url}/v1/trainings", headers={"Authorization": f"Bearer {server.bob}"}).json()["results"] == []

    with pytest.raises(replicate.exceptions.ReplicateError) as missing:
        client.trainings.create(version=f"alice/trainable:{base}", input={"word": "x"}, destination="alice/nowhere")
    assert missing.value.status == 404 and "The specified training destination does not exist" in str(missing.value)
    bad = httpx.post(f"{server.url}/v1/models/alice/trainable/versions/{base}/trainings", json={"destination": "alice/trained", "input": {"word": "x", "times": 9}},
                     headers={"Authorization": f"Bearer {server.token}"})
    assert bad.status_code == 422 and "times" in bad.text, bad.text
    (folder / "lathe.yaml").write_text((folder / "lathe.yaml").read_text().split("train:")[0])
    plain = subprocess.run([LATHE, "push", str(folder), "alice/trainable", "--json"], capture_output=True, text=True, env=server.env)
    untrainable = __import__("json").loads(plain.stdout)["version"]
    refused = httpx.post(f"{server.url}/v1/models/alice/trainable/versions/{untrainable}/trainings", json={"destination": "alice/trained", "input": {}},
                         headers={"Authorization": f"Bearer {server.token}"})
    assert refused.status_code == 400 and "declares no train: entry point" in refused.text, refused.text
    # Bob may train alice's public model, but not put a version into her model: the same answer
    # as a missing destination.
    assert httpx.patch(f"{server.url}/v1/models/alice/trainable", json={"visibility": "public"},
                       headers={"Authorization": f"Bearer {server.token}"}).status_code == 200
    bobs = httpx.post(f"{server.url}/v1/models/alice/trainable/versions/{base}/trainings", json={"destination": "alice/trained", "input": {"word": "x"}},
                      headers={"Authorization": f"Bearer {server.bob}"})
    assert bobs.status_code == 404 and "The specified training destination does not exist" in bobs.text, bobs.text
    # Private again: other tests on this server count what a visitor sees of alice's models.
    assert httpx.patch(f"{server.url}/v1/models/alice/trainable", json={"visibility": "private"},
                       headers={"Authorization": f"Bearer {server.token}"}).status_code == 200
    # The trained version stands on its own: deleting the version it was trained from leaves it running.
    assert httpx.delete(f"{server.url}/v1/models/alice/trainable/versions/{base}", headers={"Authorization": f"Bearer {server.token}"}).status_code in (202, 204)
    assert client.run(made, input={"name": "bo"}) == "ciao ciao, bo"
