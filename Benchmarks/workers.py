"""Remote workers (issue 10), side by side in one run on this machine:

1. Warm `hello` through a remote worker vs the embedded worker: `POST /v1/predictions` with
   `Prefer: wait`, one at a time, on an embedded server (one instance) and on an API-only server
   (`--no-worker`) with one `lathe worker` (one instance), both up at once and taking turns in
   rounds of 50. Bar: p50 at most 2 ms above the embedded worker (issue 20; 3 ms in issue 10).
2. Two workers vs one: 200 predictions of a model that sleeps 200 ms, 8 at a time, on an
   API-only server with one worker (4 instances) and on another with two workers (4 instances
   each), taking turns. Bar: throughput at least 1.8x (issue 20).

The embedded path against Cog's own server is `Benchmarks/predictions.py` (run it too).

Usage: python3 Benchmarks/workers.py [--requests 300] [--rounds 3]   (after a release build)
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = next((path for path in (os.path.join(ROOT, ".build-release", "release", "lathe"), os.path.join(ROOT, ".build", "release", "lathe"))
              if os.path.exists(path)), os.path.join(ROOT, ".build", "release", "lathe"))

SLEEPY = """name: bench/sleepy
python: "3.11"
predict: predict.py:Predictor
inputs:
  seconds: {type: number, default: 0.2}
output:
  type: string
"""
SLEEPY_PY = """import time

class Predictor:
    def predict(self, seconds: float = 0.2) -> str:
        time.sleep(seconds)
        return "done"
"""


class Registry:
    """A `lathe serve` of its own (data folder, port), with `workers` remote workers when given."""

    def __init__(self, scratch, *extra, workers=0, worker_instances=1):
        self.scratch = scratch
        data = os.path.join(scratch, "data")
        os.makedirs(scratch, exist_ok=True)
        run = lambda *a: subprocess.run([LATHE, *a, "--data", data], check=True, capture_output=True, text=True).stdout.strip()  # noqa: E731
        run("admin", "user", "create", "bench")
        self.token = run("admin", "token", "create", "bench")
        # (The operator's rate limit, 600 creations a minute per account, is lifted: this is load.)
        self.process = subprocess.Popen([LATHE, "serve", "--data", data, "--port", "0", "--log-level", "error", "--rate-limit-creates", "1000000", *extra],
                                        stdout=subprocess.PIPE, text=True)
        self.url = "http://" + re.search(r"127\.0\.0\.1:\d+", self.process.stdout.readline()).group(0)
        self.workers = []
        for index in range(workers):
            token = run("admin", "worker-token", "create")
            log = open(os.path.join(scratch, f"worker-{index}.log"), "w")
            worker = subprocess.Popen([LATHE, "worker", "--registry", self.url, "--data", os.path.join(scratch, f"worker-{index}"),
                                       "--name", f"w{index}", "--max-instances", str(worker_instances)],
                                      stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LATHE_WORKER_TOKEN=token))
            self.workers.append(worker)
            deadline = time.time() + 30
            while "registered as" not in open(log.name).read():
                assert time.time() < deadline and worker.poll() is None, open(log.name).read()
                time.sleep(0.05)
        self.env = dict(os.environ, LATHE_HOME=os.path.join(scratch, "home"), LATHE_REGISTRY=self.url, LATHE_TOKEN=self.token)

    def push(self, project, name):
        out = subprocess.run([LATHE, "push", project, f"bench/{name}", "--json"], env=self.env, check=True, capture_output=True, text=True).stdout
        return json.loads(out)["version"]

    def predict(self, version, input):
        request = urllib.request.Request(f"{self.url}/v1/predictions", data=json.dumps({"version": version, "input": input}).encode(),
                                         headers={"Authorization": f"Bearer {self.token}", "Prefer": "wait", "Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "succeeded", answer
        return time.perf_counter() - started

    def stop(self):
        for worker in self.workers:
            worker.terminate()
            worker.wait()
        self.process.terminate()
        self.process.wait()


def latencies(registry, version, input, count):
    return [registry.predict(version, input) for _ in range(count)]


def burst(registry, version, count, concurrency):
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: registry.predict(version, {"seconds": 0.2}), range(count)))
    return count / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(LATHE):
        sys.exit("build first: swift build -c release")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-workers-")
    servers = []
    try:
        hello = os.path.join(ROOT, "samples", "hello")
        embedded = Registry(os.path.join(scratch, "embedded"), "--max-instances", "1")
        remote = Registry(os.path.join(scratch, "remote"), "--no-worker", "--max-instances", "1", workers=1, worker_instances=1)
        servers += [embedded, remote]
        versions = {name: server.push(hello, "hello") for name, server in (("embedded", embedded), ("remote", remote))}
        samples = {"embedded": [], "remote": []}
        for name, server in (("embedded", embedded), ("remote", remote)):
            latencies(server, versions[name], {"text": "warm"}, 20)
        per_round = 50
        for _ in range(max(1, args.requests // per_round)):
            for name, server in (("embedded", embedded), ("remote", remote)):
                samples[name] += latencies(server, versions[name], {"text": "bench"}, per_round)
        p50 = {name: statistics.median(values) * 1000 for name, values in samples.items()}
        p99 = {name: sorted(values)[int(len(values) * 0.99) - 1] * 1000 for name, values in samples.items()}
        print(f"warm hello, {len(samples['remote'])} predictions each, one at a time (Prefer: wait, token auth, SQLite)")
        print(f"  p50: embedded {p50['embedded']:.2f} ms, remote worker {p50['remote']:.2f} ms: "
              f"+{p50['remote'] - p50['embedded']:.2f} ms, ratio {p50['remote'] / p50['embedded']:.2f}x (bar: at most +2 ms, issue 20)")
        print(f"  p99: embedded {p99['embedded']:.2f} ms, remote worker {p99['remote']:.2f} ms")
        for server in (embedded, remote):
            server.stop()
        servers.clear()

        project = tempfile.mkdtemp(prefix="lathe-bench-sleepy-", dir=scratch)
        open(os.path.join(project, "lathe.yaml"), "w").write(SLEEPY)
        open(os.path.join(project, "predict.py"), "w").write(SLEEPY_PY)
        fleet = ["--no-worker", "--max-instances", "8", "--max-instances-per-account", "16"]
        one = Registry(os.path.join(scratch, "one"), *fleet, workers=1, worker_instances=4)
        two = Registry(os.path.join(scratch, "two"), *fleet, workers=2, worker_instances=4)
        servers += [one, two]
        sleepy = {"one": one.push(project, "sleepy"), "two": two.push(project, "sleepy")}
        for name, server in (("one", one), ("two", two)):
            burst(server, sleepy[name], 16, 8)  # boots every instance
        rates = {"one": [], "two": []}
        for _ in range(args.rounds):
            for name, server in (("one", one), ("two", two)):
                rates[name].append(burst(server, sleepy[name], 200, 8))
        one_rate, two_rate = statistics.median(rates["one"]), statistics.median(rates["two"])
        print(f"200 predictions of 200 ms, 8 at a time, {args.rounds} rounds each (median)")
        print(f"  throughput: 1 worker {one_rate:.1f}/s ({', '.join(f'{r:.1f}' for r in rates['one'])}), "
              f"2 workers {two_rate:.1f}/s ({', '.join(f'{r:.1f}' for r in rates['two'])}): ratio {two_rate / one_rate:.2f}x (bar 1.8x, issue 20)")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
