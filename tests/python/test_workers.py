"""Issue 10: an API-only server (`lathe serve --no-worker`) and `lathe worker`s that run the models,
each with its own data folder and nothing but HTTP between them. Real processes throughout:
workers are killed with SIGKILL, stopped with SIGSTOP, restarted, and (as root) moved into
network namespaces of their own."""
import base64
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import LATHE, POSTGRES, ROOT, S3, Server, Worker, lathe

pytestmark = pytest.mark.skipif(bool(os.environ.get("LATHE_TEST_WORKERS")), reason="runs its own fleet")

SLEEPY = """name: tests/sleepy
python: "3.11"
predict: predict.py:Predictor
inputs:
  seconds: {type: number, default: 0.2, minimum: 0, maximum: 120}
  talk: {type: boolean, default: false}
output:
  type: string
"""

SLEEPY_PY = """import time

class Predictor:
    def predict(self, seconds: float = 0.2, talk: bool = False) -> str:
        if talk:
            print("working", flush=True)
        time.sleep(seconds)
        return f"slept {seconds}"
"""


def sleepy_project(name):
    folder = tempfile.mkdtemp(prefix="lathe-sleepy-")
    with open(os.path.join(folder, "lathe.yaml"), "w") as spec:
        spec.write(SLEEPY.replace("tests/sleepy", f"tests/{name}"))
    with open(os.path.join(folder, "predict.py"), "w") as code:
        code.write(SLEEPY_PY)
    return folder


def push(fleet, project, name):
    pushed = json.loads(lathe("push", project, f"alice/{name}", "--json", env=fleet.env).stdout)
    return pushed["version"]


def call(fleet, method, path, body=None, token=None, headers=None, base=None):
    request = urllib.request.Request((base or fleet.url) + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token or fleet.token}", "Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            text = response.read().decode()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def predict(fleet, model, input, wait=60):
    status, body = call(fleet, "POST", f"/v1/models/alice/{model}/predictions", {"input": input}, headers={"Prefer": f"wait={min(wait, 60)}"})
    assert status == 201, body
    return finish(fleet, body, wait)


def finish(fleet, prediction, wait=60):
    deadline = time.time() + wait
    while prediction["status"] not in ("succeeded", "failed", "canceled"):
        assert time.time() < deadline, f"prediction still {prediction['status']}: {prediction}"
        time.sleep(0.05)
        _, prediction = call(fleet, "GET", f"/v1/predictions/{prediction['id']}")
    return prediction


def until(condition, seconds, message):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, message() if callable(message) else message
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet():
    running = Server("--no-worker", "--worker-lost-after", "4", "--hardware-wait", "4", "--max-instances", "4", "--max-timeout", "20",
                     "--max-instances-per-account", "8", "--idle-timeout", "60", samples=("hello", "streamer", "image"))
    running.sleepy = {}
    for name in ("sleepy", "sleepy-b"):
        running.sleepy[name] = push(running, sleepy_project(name), name)
    running.w1 = Worker(running, "w1", "--max-instances", "2")
    running.w2 = Worker(running, "w2", "--max-instances", "2")
    yield running
    running.stop()


def test_worker_tokens_open_only_the_worker_protocol(fleet):
    token = fleet.workers[0].token
    assert token.startswith("lwk_")
    # No /v1 route, not even public ones, takes a worker token; web pages treat it as no one.
    for path in ("/v1/account", "/v1/models", "/v1/predictions", "/v1/models/alice/hello"):
        status, _ = call(fleet, "GET", path, token=token)
        assert status == 401, path
    import http.client
    connection = http.client.HTTPConnection(fleet.url[len("http://"):])
    connection.request("GET", "/alice/hello", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    # Refused credentials on a web page: sent to sign in, as any invalid token is.
    assert response.status in (303, 401, 404) and b"Hello" not in response.read(), response.status
    # A user's token does not open the worker protocol.
    status, body = call(fleet, "POST", "/internal/v1/workers/register", {"name": "x"}, token=fleet.token)
    assert status == 401 and "worker token" in json.dumps(body)
    # A worker reads a private model's versions only while it was asked to run one.
    status, _ = call(fleet, "GET", "/v2/alice/hello/tags/list", token=token)
    assert status == 404
    # Stored hashed: the secret is nowhere in the database files.
    data = b""
    for root, _, names in os.walk(fleet.data):
        for name in names:
            if "sqlite" in name:
                with open(os.path.join(root, name), "rb") as handle:
                    data += handle.read()
    assert token.encode() not in data
    # Listed without secrets; revoked, it is refused and the worker using it stops saying why.
    listed = lathe("admin", "worker-token", "ls", "--data", fleet.data, env=fleet.server_env).stdout
    assert "w1" in listed and token not in listed
    doomed = Worker(fleet, "w-revoked", "--max-instances", "1")
    token_id = next(line.split("\t")[0] for line in lathe("admin", "worker-token", "ls", "--data", fleet.data, env=fleet.server_env).stdout.splitlines()
                    if line.split("\t")[1] == "w-revoked")
    lathe("admin", "worker-token", "revoke", token_id, "--data", fleet.data, env=fleet.server_env)
    until(lambda: doomed.process.poll() is not None, 30, doomed.log)
    assert doomed.process.returncode != 0 and "the worker token is not valid (revoked or mistyped)" in doomed.log(), doomed.log()


def test_bad_worker_reports_get_a_sentence_and_hold_up_no_one(fleet):
    """Malformed or misdirected reports on the worker routes: 400 with a sentence for a body that
    is not the protocol's, 404 for a worker the server does not know, 409 for an assignment the
    worker does not hold; the server stays up and the fleet keeps answering."""
    import http.client
    token = fleet.workers[0].token
    registered = re.findall(r"registered as (\S+)", fleet.w1.log())
    worker = registered[-1] if registered else None
    status, body = call(fleet, "POST", "/internal/v1/workers/register", {"name": 42, "hardware": "lots"}, token=token)
    assert status == 400 and "`name`" in json.dumps(body), body
    for raw in [b"{", b"\xff\xfe", b"[]", json.dumps({"name": "w", "version": "x", "hardware": {"cpus": -1}}).encode()]:
        connection = http.client.HTTPConnection(fleet.url[len("http://"):], timeout=30)
        connection.request("POST", "/internal/v1/workers/register", body=raw,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        assert response.status == 400 and len(text) > 20, (raw, response.status, text)
    status, body = call(fleet, "POST", "/internal/v1/workers/w-nobody/heartbeat", {}, token=token)
    assert status == 404 and "register" in json.dumps(body).lower(), body
    if worker:
        status, body = call(fleet, "POST", f"/internal/v1/workers/{worker}/instances/i-nope/assignments/a-nope/complete",
                            {"status": "succeeded"}, token=token)
        assert status == 409, body
    # Nothing of this held up real work.
    started = time.time()
    assert predict(fleet, "sleepy", {"seconds": 0.05})["status"] == "succeeded"
    assert time.time() - started < 30


def test_predictions_spread_over_both_workers(fleet):
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda index: predict(fleet, "hello", {"text": f"n{index}"}), range(200)))
    elapsed = time.time() - started
    assert [r["status"] for r in results] == ["succeeded"] * 200, [r for r in results if r["status"] != "succeeded"][:2]
    assert sorted(r["output"] for r in results) == sorted(f"Hello, n{index}!" for index in range(200))
    # Both workers run instances of the version (two slots each, four instances allowed).
    assert fleet.w1.instances() >= 1 and fleet.w2.instances() >= 1, (fleet.w1.instances(), fleet.w2.instances(), fleet.log())
    placed = set(re.findall(r'where=(w-[0-9a-f-]+)', fleet.log()))
    assert len(placed) >= 2, fleet.log()
    print(f"200 predictions over two workers in {elapsed:.1f} s")


def test_streamed_output_from_a_remote_worker_arrives_in_pieces(fleet):
    _, created = call(fleet, "POST", "/v1/models/alice/streamer/predictions",
                      {"input": {"prompt": "the boats", "max_words": 12, "seed": 3, "delay": 0.15}, "stream": True})
    request = urllib.request.Request(created["urls"]["stream"], headers={"Accept": "text/event-stream"})
    arrivals = []
    with urllib.request.urlopen(request, timeout=60) as stream:
        for line in stream:
            line = line.decode().strip()
            if line == "event: output":
                arrivals.append(time.time())
            if line == "event: done":
                break
    assert len(arrivals) >= 6, arrivals
    assert arrivals[-1] - arrivals[0] > 0.8, f"items arrived over time, not at once: {arrivals}"


CHATTY_PY = """import time

class Predictor:
    def predict(self, seconds: float = 0.2, talk: bool = False) -> str:
        for line in range(400):
            print(f"line {line}", flush=True)
            if line % 20 == 0:
                time.sleep(0.012)
        return "done"
"""


def test_every_log_line_from_a_remote_worker_arrives(fleet):
    """Logs reach the server in batches; the last batch must not be cut off when the prediction
    ends while a batch is on its way (it was: the end cancelled the request carrying it)."""
    folder = sleepy_project("chatty")
    with open(os.path.join(folder, "predict.py"), "w") as code:
        code.write(CHATTY_PY)
    push(fleet, folder, "chatty")
    for _ in range(6):
        status, done = call(fleet, "POST", "/v1/models/alice/chatty/predictions", {"input": {}}, headers={"Prefer": "wait=60"})
        assert status == 201 and done["status"] == "succeeded", done
        lines = [line for line in done["logs"].splitlines() if line.startswith("line ")]
        assert lines == [f"line {index}" for index in range(400)], done["logs"][-300:]


def test_file_inputs_and_outputs_made_on_a_worker_download_from_the_server(fleet):
    with open(os.path.join(ROOT, "samples", "image", "example.png"), "rb") as handle:
        original = handle.read()
    image = "data:image/png;base64," + base64.b64encode(original).decode()
    done = predict(fleet, "image", {"image": image, "effect": "invert"}, wait=300)
    assert done["status"] == "succeeded", done
    # (A waiting request gets the file inline, as Replicate's sync mode does; the object has its URL.)
    _, done = call(fleet, "GET", f"/v1/predictions/{done['id']}")
    assert done["output"].startswith(fleet.url), done["output"]
    with urllib.request.urlopen(urllib.request.Request(done["output"], headers={"Authorization": f"Bearer {fleet.token}"})) as response:
        png = response.read()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png != original
    # Nothing of the server's data folder is on a worker, and nothing of the worker's outputs stays.
    for worker in (fleet.w1, fleet.w2):
        assert not os.path.exists(os.path.join(worker.data, "registry.sqlite"))
        leftovers = [os.path.join(r, n) for r, _, names in os.walk(worker.data) if "/outputs/" in r + "/" for n in names]
        assert leftovers == [], leftovers


def test_cancel_reaches_a_remote_worker_within_a_second(fleet):
    _, created = call(fleet, "POST", "/v1/models/alice/sleepy/predictions", {"input": {"seconds": 60, "talk": True}})
    until(lambda: call(fleet, "GET", f"/v1/predictions/{created['id']}")[1]["status"] == "processing", 120, "never started")
    time.sleep(0.3)
    started = time.time()
    call(fleet, "POST", f"/v1/predictions/{created['id']}/cancel")
    done = finish(fleet, created, wait=10)
    elapsed = time.time() - started
    assert done["status"] == "canceled", done
    assert elapsed < 1.0, f"the cancel took {elapsed:.2f} s"


def test_a_remote_worker_enforces_the_timeout(fleet):
    # The operator caps predictions at 20 s; the worker stops one that sleeps 40.
    started = time.time()
    done = predict(fleet, "sleepy", {"seconds": 40}, wait=60)
    elapsed = time.time() - started
    assert done["status"] == "failed" and "timed out" in (done["error"] or "").lower(), done
    assert 19 < elapsed < 30, elapsed
    # The instance is replaced or reused: the next prediction runs.
    assert predict(fleet, "sleepy", {"seconds": 0.01})["status"] == "succeeded"


def test_hardware_routing_and_hardware_nobody_offers(fleet):
    large = Worker(fleet, "w-large", "--max-instances", "1", "--hardware", "cpu-large")
    try:
        status, _ = call(fleet, "PATCH", "/v1/models/alice/sleepy-b", {"hardware": "cpu-large"})
        assert status == 200
        status, listed = call(fleet, "GET", "/v1/hardware")
        assert {"sku": "cpu-large", "name": "cpu-large"} in listed and {"sku": "cpu", "name": "CPU"} in listed, listed
        for _ in range(3):
            done = predict(fleet, "sleepy-b", {"seconds": 0.05})
            assert done["status"] == "succeeded", done
        assert large.instances() == 1
        # Only that worker offers cpu-large: neither other worker ever booted the version.
        for worker in (fleet.w1, fleet.w2):
            assert not os.path.exists(os.path.join(worker.data, "instances", fleet.sleepy["sleepy-b"])), worker.name
        # Hardware nobody offers: the prediction says why it waits, then fails with what to do.
        status, _ = call(fleet, "PATCH", "/v1/models/alice/sleepy-b", {"hardware": "gpu-a100"})
        _, created = call(fleet, "POST", "/v1/models/alice/sleepy-b/predictions", {"input": {"seconds": 0.05}})
        time.sleep(1.5)
        _, waiting = call(fleet, "GET", f"/v1/predictions/{created['id']}")
        assert waiting["status"] == "starting" and "Waiting for hardware gpu-a100" in waiting["logs"], waiting
        done = finish(fleet, created, wait=30)
        assert done["status"] == "failed" and "No worker offers hardware gpu-a100" in done["error"], done
        status, body = call(fleet, "PATCH", "/v1/models/alice/sleepy-b", {"hardware": "GPU A100!"})
        assert status == 400 and "SKU" in json.dumps(body)
    finally:
        call(fleet, "PATCH", "/v1/models/alice/sleepy-b", {"hardware": "cpu"})
        large.kill()


def test_the_version_cache_is_bounded_least_recently_used_and_kept_across_restarts(fleet):
    cache = Worker(fleet, "w-cache", "--max-instances", "1", "--cache-size", "0", "--hardware", "cpu-cache")
    project = sleepy_project("sleepy-c")
    fleet.sleepy["sleepy-c"] = push(fleet, project, "sleepy-c")
    b, c = fleet.sleepy["sleepy-b"], fleet.sleepy["sleepy-c"]

    def held():
        """Versions unpacked on the worker, when its store holds exactly as many (else why not)."""
        with open(os.path.join(cache.data, "store", "index.json")) as index:
            tagged = len(json.load(index)["manifests"])
        folder = os.path.join(cache.data, "instances")
        unpacked = sorted(name[:12] for name in os.listdir(folder) if not name.startswith("."))
        return unpacked if tagged == len(unpacked) else [f"{tagged} tagged", *unpacked]

    try:
        for name in ("sleepy-b", "sleepy-c"):
            assert call(fleet, "PATCH", f"/v1/models/alice/{name}", {"hardware": "cpu-cache"})[0] == 200
        # One slot, no room in the cache: each switch stops the idle instance, pulls the other
        # version and drops the one no instance runs.
        for name, version in (("sleepy-b", b), ("sleepy-c", c), ("sleepy-b", b)):
            done = predict(fleet, name, {"seconds": 0.01})
            assert done["status"] == "succeeded", done
            until(lambda: held() == [version[:12]], 10, lambda: f"{held()} != [{version[:12]}]")
        assert cache.log().count("pulled version") == 3, cache.log()
        # Restarted with room, it still has the last version: its cold boot skips the download.
        cache.kill()
        cache.extra = ["--max-instances", "1", "--hardware", "cpu-cache"]
        cache.start()
        done = predict(fleet, "sleepy-b", {"seconds": 0.01})
        assert done["status"] == "succeeded", done
        assert f"version {b[:12]} was in this worker's cache" in cache.log(), cache.log()
    finally:
        for name in ("sleepy-b", "sleepy-c"):
            call(fleet, "PATCH", f"/v1/models/alice/{name}", {"hardware": "cpu"})
        cache.kill()


TUNABLE = """name: tests/tunable
python: "3.11"
predict: predict.py:Model
inputs: {name: string}
output: {type: string}
train:
  entry: predict.py:Model
  inputs: {word: string, seconds: {type: number, default: 0, minimum: 0, maximum: 60}}
"""

TUNABLE_PY = """import time
from pathlib import Path

class Model:
    def setup(self, weights=None):
        self.word = open(weights).read() if weights else "plain"

    def predict(self, name: str) -> str:
        return f"{self.word} {name}"

    def train(self, word: str, seconds: float = 0) -> Path:
        time.sleep(seconds)
        Path("word.txt").write_text(word)  # where it stands, as Cog trainers write
        return Path("word.txt")
"""


def test_a_training_runs_on_a_remote_worker_and_its_version_runs_there_too(fleet):
    """The config a training runs under is pulled by a worker like any version (this server runs
    no model itself; the runner calls the class's train, not its predict), and the version it
    makes is the destination's."""
    folder = tempfile.mkdtemp(prefix="lathe-tunable-")
    with open(os.path.join(folder, "lathe.yaml"), "w") as spec:
        spec.write(TUNABLE)
    with open(os.path.join(folder, "predict.py"), "w") as code:
        code.write(TUNABLE_PY)
    base = push(fleet, folder, "tunable")
    status, _ = call(fleet, "POST", "/v1/models", {"owner": "alice", "name": "tuned", "visibility": "private", "hardware": "cpu"})
    assert status == 201
    status, training = call(fleet, "POST", f"/v1/models/alice/tunable/versions/{base}/trainings", {"destination": "alice/tuned", "input": {"word": "hej"}})
    assert status == 201 and training["urls"]["get"].endswith(f"/v1/trainings/{training['id']}"), training
    deadline = time.time() + 90
    while training["status"] not in ("succeeded", "failed", "canceled"):
        assert time.time() < deadline, training
        time.sleep(0.1)
        _, training = call(fleet, "GET", f"/v1/trainings/{training['id']}")
    assert training["status"] == "succeeded", training
    assert training["output"]["version"].startswith("alice/tuned:"), training
    assert predict(fleet, "tuned", {"name": "ada"})["output"] == "hej ada"
    assert predict(fleet, "tunable", {"name": "ada"})["output"] == "plain ada"

    # A cancel reaches the training where it runs, and it makes no version.
    status, slow = call(fleet, "POST", f"/v1/models/alice/tunable/versions/{base}/trainings",
                        {"destination": "alice/tuned", "input": {"word": "never", "seconds": 30}})
    assert status == 201, slow
    until(lambda: call(fleet, "GET", f"/v1/trainings/{slow['id']}")[1]["status"] == "processing", 30, "the slow training never started")
    started = time.time()
    status, canceled = call(fleet, "POST", f"/v1/trainings/{slow['id']}/cancel")
    assert status == 200 and canceled["status"] == "canceled" and time.time() - started < 10, canceled
    _, versions = call(fleet, "GET", "/v1/models/alice/tuned/versions")
    assert len(versions["results"]) == 1 and predict(fleet, "tuned", {"name": "bo"})["output"] == "hej bo"


def busy_worker(fleet, workers, seconds=60):
    """The worker that runs a model process now (the sleepy version's instance)."""
    found = []
    until(lambda: found.extend(w for w in workers if w.instances()) or found, seconds, "no worker runs an instance")
    return found[0]


def running_on_fresh_workers(fleet, seconds):
    """Both workers restarted with no instance (only the version's own instance counts), then a
    silent prediction of `seconds` processing: returns it and the worker running it."""
    for worker in (fleet.w1, fleet.w2):
        worker.kill()
        shutil.rmtree(os.path.join(worker.data, "work"), ignore_errors=True)
    for worker in (fleet.w1, fleet.w2):
        worker.start()
    _, created = call(fleet, "POST", "/v1/models/alice/sleepy/predictions", {"input": {"seconds": seconds}})
    until(lambda: call(fleet, "GET", f"/v1/predictions/{created['id']}")[1]["status"] == "processing", 120, "never started")
    return created, busy_worker(fleet, [fleet.w1, fleet.w2])


def test_a_killed_worker_s_prediction_runs_again_elsewhere_and_one_with_output_fails_clearly(fleet):
    # Silent prediction: nothing produced when its worker dies, so it runs again on the other.
    created, victim = running_on_fresh_workers(fleet, seconds=6)
    other = fleet.w2 if victim is fleet.w1 else fleet.w1
    victim.kill(9)
    done = finish(fleet, created, wait=90)
    assert done["status"] == "succeeded", done
    assert "running it again (attempt 2 of 3)" in done["logs"] and other.instances() >= 1, done
    # A prediction that had logged something is not run twice: it fails naming the lost worker.
    victim.start()
    _, created = call(fleet, "POST", "/v1/models/alice/sleepy/predictions", {"input": {"seconds": 8, "talk": True}})
    until(lambda: "working" in (call(fleet, "GET", f"/v1/predictions/{created['id']}")[1]["logs"] or ""), 120, "never logged")
    # The restarted victim runs nothing yet, so the prediction runs where an instance is: kill
    # every worker that has one (the one running it among them).
    running = [w for w in (fleet.w1, fleet.w2) if w.instances()]
    for worker in running:
        worker.kill(9)
    done = finish(fleet, created, wait=60)
    assert done["status"] == "failed", done
    assert re.search(r"worker w[12] \(w-[0-9a-f-]+\) was lost", done["error"]), done["error"]
    # Nothing is stuck: restarted, they register again (a new registration each) and are used.
    for worker in running:
        before = worker.registrations()
        worker.start()
        assert worker.registrations() == before + 1
    results = [predict(fleet, "sleepy", {"seconds": 0.05}) for _ in range(3)]
    assert all(r["status"] == "succeeded" for r in results), results


def test_a_stopped_worker_leaves_the_fleet_and_what_ran_there_runs_again_at_once(fleet):
    """SIGTERM (`systemctl stop`): the worker stops its instances and leaves the fleet before it
    exits, so the server ends what ran there now, saying why, and no replica lists it any more."""
    created, victim = running_on_fresh_workers(fleet, seconds=6)
    victim.kill(signal.SIGTERM)
    assert victim.process.returncode == 0, victim.log()[-2000:]
    assert "left the fleet" in victim.log(), victim.log()[-2000:]
    assert victim.instances() == 0, "its model processes stopped with it"
    listing = lathe("admin", "workers", "--data", fleet.data, env=fleet.server_env).stdout
    assert f"\t{victim.name}\t" not in listing, listing
    done = finish(fleet, created, wait=90)
    assert done["status"] == "succeeded", done
    assert f"worker {victim.name} left the fleet: it shut down; running it again (attempt 2 of 3)" in done["logs"], done["logs"]
    victim.start()


def test_a_worker_that_comes_back_late_cannot_overwrite(fleet):
    _, created = call(fleet, "POST", "/v1/models/alice/sleepy/predictions", {"input": {"seconds": 3}})
    until(lambda: call(fleet, "GET", f"/v1/predictions/{created['id']}")[1]["status"] == "processing", 120, "never started")
    victim = busy_worker(fleet, [fleet.w1, fleet.w2])
    other = fleet.w2 if victim is fleet.w1 else fleet.w1
    # Frozen longer than the server waits (4 s): counted lost, the prediction runs on the other.
    victim.kill(signal.SIGSTOP)
    try:
        done = finish(fleet, created, wait=60)
        assert done["status"] == "succeeded", done
        assert "running it again" in done["logs"], done
    finally:
        victim.kill(signal.SIGCONT)
    # Thawed, its model finishes the first run and reports it: refused, and the result stands.
    until(lambda: "no longer yours" in victim.log() or "not registered" in victim.log() or "registering again" in victim.log(), 30, victim.log)
    time.sleep(1)
    _, after = call(fleet, "GET", f"/v1/predictions/{created['id']}")
    assert after["status"] == "succeeded" and after["completed_at"] == done["completed_at"], (done, after)
    until(lambda: victim.registrations() >= 2, 30, victim.log)


@pytest.mark.skipif(not POSTGRES, reason="replicas need PostgreSQL (set LATHE_TEST_POSTGRES, as scripts/test does)")
def test_api_only_replicas_hand_predictions_to_the_one_with_a_worker():
    """Two API-only replicas on one PostgreSQL; the worker talks to the first. Predictions made
    on the second go back to the shared queue and run through the first's worker."""
    cluster = Server("--no-worker", "--max-instances-per-account", "8", samples=("hello",), replicas=2)
    try:
        first, second = [url for _, _, url in cluster.replicas]
        Worker(cluster, "wa", "--max-instances", "2", registry=first)
        version = cluster.versions["hello"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: call(cluster, "POST", "/v1/predictions", {"version": version, "input": {"text": f"r{i}"}},
                                                   headers={"Prefer": "wait=30"}, base=second)[1], range(12)))
        done = [finish(cluster, answer, wait=60) for answer in answers]
        assert [d["status"] for d in done] == ["succeeded"] * 12, done
        assert sorted(d["output"] for d in done) == sorted(f"Hello, r{i}!" for i in range(12))
    finally:
        cluster.stop()


NETNS = os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.skipif(not NETNS, reason="network namespaces need root and iproute2")
def test_workers_in_their_own_network_namespaces():
    """Two workers, each in a network namespace of its own joined to the host by a veth pair: no
    loopback or disk they could share with the server; the server listens on the host's veth
    address only."""
    tag = f"{os.getpid() % 10000}"
    names = [f"lathe-t{tag}-1", f"lathe-t{tag}-2"]
    subnet = [f"10.231.{(os.getpid() + i) % 200 + 1}" for i in range(2)]

    def run(*command):
        subprocess.run(command, check=True, capture_output=True)

    try:
        for name, net, index in zip(names, subnet, range(2)):
            host_end, ns_end = f"lh{tag}{index}", f"ln{tag}{index}"
            run("ip", "netns", "add", name)
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            run("ip", "link", "set", ns_end, "netns", name)
            run("ip", "addr", "add", f"{net}.1/24", "dev", host_end)
            run("ip", "link", "set", host_end, "up")
            run("ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.2/24", "dev", ns_end)
            run("ip", "netns", "exec", name, "ip", "link", "set", ns_end, "up")
            run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
            run("ip", "netns", "exec", name, "ip", "route", "add", "default", "via", f"{net}.1")
        host = f"{subnet[0]}.1"
        fleet = NamespacedServer(host)
        try:
            workers = [Worker(fleet, f"ns{i + 1}", "--max-instances", "2", netns=names[i], registry=fleet.url) for i in range(2)]
            # Loopback inside a namespace is its own: the server is not there.
            probe = subprocess.run(["ip", "netns", "exec", names[1], "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://127.0.0.1:{fleet.url.rsplit(':', 1)[1]}/healthz"], capture_output=True, text=True)
            assert probe.stdout in ("000", ""), probe.stdout
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda index: predict(fleet, "hello", {"text": f"n{index}"}), range(40)))
            assert all(r["status"] == "succeeded" for r in results), [r for r in results if r["status"] != "succeeded"][:2]
            assert all(w.instances() >= 1 for w in workers), [w.instances() for w in workers]
            # A file in, a file out, through a worker that reaches nothing but the server.
            folder = tempfile.mkdtemp(prefix="lathe-reverse-")
            open(os.path.join(folder, "lathe.yaml"), "w").write(REVERSE)
            open(os.path.join(folder, "predict.py"), "w").write(REVERSE_PY)
            push(fleet, folder, "reverse")
            payload = os.urandom(3000)
            done = predict(fleet, "reverse", {"data": "data:application/octet-stream;base64," + base64.b64encode(payload).decode()})
            assert done["status"] == "succeeded", done
            _, done = call(fleet, "GET", f"/v1/predictions/{done['id']}")
            with urllib.request.urlopen(urllib.request.Request(done["output"], headers={"Authorization": f"Bearer {fleet.token}"})) as response:
                assert response.read() == payload[::-1]
        finally:
            fleet.stop()
    finally:
        for name, index in zip(names, range(2)):
            subprocess.run(["ip", "link", "del", f"lh{tag}{index}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


REVERSE = """name: tests/reverse
python: "3.11"
predict: predict.py:Predictor
inputs:
  data: {type: file}
output:
  type: file
"""

REVERSE_PY = """from pathlib import Path

class Predictor:
    def predict(self, data: Path) -> Path:
        out = Path("/tmp/reversed.bin")
        out.write_bytes(Path(data).read_bytes()[::-1])
        return out
"""


class NamespacedServer(Server):
    """An API-only server listening on `host` (the host's end of a veth pair) instead of loopback."""

    def __init__(self, host):
        self.host = host
        # Blobs stream through the server: a worker in its namespace reaches nothing else (not
        # the S3 gateway on the host's loopback, where a redirect would send it).
        super().__init__("--no-worker", "--host", host, "--max-instances", "4", "--max-instances-per-account", "8",
                         "--blob-redirect", "false", samples=("hello",))

    def start_replica(self, index, extra, preexec_fn=None, runtime=False, port=0):
        log_path = os.path.join(self.scratch, "serve.log")
        arguments = [LATHE, "serve", "--data", self.data, "--port", str(port), "--log-level", "info", *extra]
        with open(log_path, "a") as log:
            process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=log, text=True, env=self.server_env)
        line = process.stdout.readline()
        match = re.search(re.escape(self.host) + r":\d+", line)
        if not match:
            raise AssertionError(f"lathe serve did not start: {line!r}\n" + open(log_path).read()[-3000:])
        return process, log_path, "http://" + match.group(0)


GPU_MODEL = """name: tests/gpu-probe
python: "3.11"
predict: predict.py:Predictor
output:
  type: string
"""

GPU_PY = """import os

class Predictor:
    def predict(self) -> str:
        nodes = sorted(name for name in os.listdir("/dev") if name.startswith("nvidia"))
        return os.environ.get("CUDA_VISIBLE_DEVICES", "") + "|" + ",".join(nodes)
"""


@pytest.mark.skipif(not os.path.exists("/dev/nvidia0"), reason="no NVIDIA GPU on this machine (/dev/nvidia0 is absent): the GPU path is covered by HardwareTests only")
def test_a_gpu_instance_sees_only_its_own_gpu(fleet):
    gpu = Worker(fleet, "w-gpu", "--max-instances", "1")
    try:
        offered = [h["sku"] for h in call(fleet, "GET", "/v1/hardware")[1] if h["sku"].startswith("gpu-")]
        assert offered, "the worker offered no gpu- SKU although /dev/nvidia0 exists"
        folder = tempfile.mkdtemp(prefix="lathe-gpu-")
        open(os.path.join(folder, "lathe.yaml"), "w").write(GPU_MODEL)
        open(os.path.join(folder, "predict.py"), "w").write(GPU_PY)
        push(fleet, folder, "gpu-probe")
        call(fleet, "PATCH", "/v1/models/alice/gpu-probe", {"hardware": offered[0]})
        done = predict(fleet, "gpu-probe", {}, wait=300)
        assert done["status"] == "succeeded", done
        uuids, nodes = done["output"].split("|")
        assert uuids.startswith("GPU-") and "," not in uuids, done["output"]
        own = [n for n in nodes.split(",") if n[len("nvidia"):].isdigit()]
        assert len(own) == 1, nodes
    finally:
        gpu.kill()
