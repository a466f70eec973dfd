"""Scale-out figures (issue 9), every side by side in one run on this machine:

1. Sequential `Prefer: wait` predictions of `samples/hello`: one `lathe serve` on SQLite and one
   on PostgreSQL, taking turns in rounds of 50 requests; p50 ratio PostgreSQL / SQLite.
2. Throughput of 200 predictions of 200 ms at concurrency 8: one replica direct versus two
   replicas behind nginx (deploy/nginx.conf), both on PostgreSQL.
3. Queue claim to `processing` on PostgreSQL with a warm instance free: `started_at - created_at`
   of the predictions in (1), p50 and p99.
4. The fleet behind nginx: two API-only replicas on PostgreSQL behind nginx, with one and then two
   `lathe worker`s (4 instances each) given only nginx's address; 200 predictions of 200 ms at
   concurrency 8, three alternating rounds. Bar: two workers at least 1.8x one (issue 20).

Needs a release build (`swift build -c release --scratch-path .build-release` or `make bench`),
PostgreSQL (scripts/postgres) and nginx. Usage: python3 Benchmarks/replicas.py [--requests 300]
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = next(path for path in (os.path.join(ROOT, ".build-release", "release", "lathe"), os.path.join(ROOT, ".build", "release", "lathe"))
             if os.path.exists(path))

SLEEPER = {
    "lathe.yaml": 'python: "3.11"\npredict: predict.py:predict\ninputs:\n  text: {type: string}\noutput: {type: string}\n',
    "predict.py": "import time\n\ndef predict(text: str) -> str:\n    time.sleep(0.2)\n    return text\n",
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*args, env=None):
    result = subprocess.run([LATHE, *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"lathe {' '.join(args)} failed: {result.stderr}")
    return result.stdout


class Registry:
    """Replicas of `lathe serve` on one data folder (and one database), optionally behind nginx."""

    def __init__(self, scratch, name, database=None, replicas=1, extra=(), workers=0, worker_instances=4):
        self.folder = os.path.join(scratch, name)
        self.data = os.path.join(self.folder, "data")
        self.env = dict(os.environ, **({"LATHE_DATABASE_URL": database} if database else {}))
        run("admin", "user", "create", "bench", "--data", self.data, env=self.env)
        self.token = run("admin", "token", "create", "bench", "--data", self.data, env=self.env).strip()
        self.front = free_port() if replicas > 1 else None
        self.processes, ports = [], []
        for index in range(replicas):
            arguments = [LATHE, "serve", "--data", self.data, "--port", "0", "--log-level", "warning",
                         "--runtime", os.path.join(self.folder, f"runtime-{index}"), "--rate-limit-creates", "100000",
                         "--rate-limit-requests", "100000", *extra]
            if self.front:
                arguments += ["--base-url", f"http://127.0.0.1:{self.front}"]
            process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env)
            ports.append(re.search(r"127\.0\.0\.1:(\d+)", process.stdout.readline()).group(1))
            self.processes.append(process)
        self.url = f"http://127.0.0.1:{ports[0]}"
        self.nginx = None
        if self.front:
            config = open(os.path.join(ROOT, "deploy", "nginx.conf")).read()
            config = config.replace("127.0.0.1:8080", f"127.0.0.1:{self.front}")
            config = config.replace("server 127.0.0.1:8081", f"server 127.0.0.1:{ports[0]}").replace("server 127.0.0.1:8082", f"server 127.0.0.1:{ports[1]}")
            prefix = os.path.join(self.folder, "nginx")
            os.makedirs(prefix, exist_ok=True)
            open(os.path.join(prefix, "nginx.conf"), "w").write(config)
            self.nginx = subprocess.Popen(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.url = f"http://127.0.0.1:{self.front}"
            time.sleep(1)
        self.home = os.path.join(self.folder, "home")
        # Workers are given only the front's address (nginx when there are replicas).
        self.workers = []
        for index in range(workers):
            token = run("admin", "worker-token", "create", "--data", self.data, env=self.env).strip()
            log = os.path.join(self.folder, f"worker-{index}.log")
            self.workers.append(subprocess.Popen([LATHE, "worker", "--registry", self.url, "--data", os.path.join(self.folder, f"worker-{index}"),
                                                  "--name", f"w{index}", "--max-instances", str(worker_instances)],
                                                 stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ, LATHE_WORKER_TOKEN=token)))
            deadline = time.time() + 30
            while "registered as" not in open(log).read():
                assert time.time() < deadline and self.workers[-1].poll() is None, open(log).read()
                time.sleep(0.05)

    def push(self, project, name):
        env = dict(os.environ, LATHE_HOME=self.home, LATHE_REGISTRY=self.url, LATHE_TOKEN=self.token)
        return json.loads(run("push", project, f"bench/{name}", "--json", env=env))["version"]

    def predict(self, name, text):
        request = urllib.request.Request(f"{self.url}/v1/models/bench/{name}/predictions", data=json.dumps({"input": {"text": text}}).encode(),
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", "Prefer": "wait"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "succeeded", answer
        return time.perf_counter() - started, answer

    def stop(self):
        for worker in self.workers:
            worker.terminate()
            worker.wait()
        for process in self.processes:
            process.terminate()
            process.wait()
        if self.nginx:
            self.nginx.terminate()
            self.nginx.wait()


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    options = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="lathe-bench-replicas-")
    os.chmod(scratch, 0o755)  # the cluster inside runs as the postgres user
    cluster = os.path.join(scratch, "postgres")
    base = subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "start", cluster], capture_output=True, text=True, check=True).stdout.strip()
    server = base.rsplit("/", 1)[0]

    def database(name):
        subprocess.run(["psql", server + "/postgres", "-qtAc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return f"{server}/{name}"

    sleeper = os.path.join(scratch, "sleeper")
    os.makedirs(sleeper)
    for name, text in SLEEPER.items():
        open(os.path.join(sleeper, name), "w").write(text)
    registries = []
    try:
        sqlite = Registry(scratch, "sqlite")
        postgres = Registry(scratch, "pg", database=database("bench_one"))
        pair = Registry(scratch, "pair", database=database("bench_pair"), replicas=2)
        registries = [sqlite, postgres, pair]
        hello = os.path.join(ROOT, "samples", "hello")
        for registry in registries:
            registry.push(hello, "hello")
            registry.push(sleeper, "sleeper")
            registry.predict("hello", "warm")

        # 1 and 3: sequential, rounds taking turns.
        latencies = {"sqlite": [], "pg": []}
        claims = []
        for round_index in range(max(1, options.requests // 50)):
            for name, registry in (("sqlite", sqlite), ("pg", postgres)):
                for index in range(50):
                    seconds, answer = registry.predict("hello", f"r{round_index}-{index}")
                    latencies[name].append(seconds)
                    if name == "pg":
                        claims.append(stamp(answer["started_at"]) - stamp(answer["created_at"]))
        p50 = {name: statistics.median(values) for name, values in latencies.items()}
        claims.sort()

        # 2: 200 predictions of 200 ms at concurrency 8, one replica direct vs two behind nginx.
        def throughput(registry):
            for index in range(4):
                registry.predict("sleeper", f"warm{index}")
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda index: registry.predict("sleeper", str(index)), range(200)))
            return 200 / (time.perf_counter() - started)

        one = throughput(postgres)
        two = throughput(pair)

        # 4: the fleet behind nginx: two API-only replicas on PostgreSQL, workers (4 instances each)
        # given only nginx's address; one worker against two, in alternating rounds.
        # Each replica's own limits would otherwise cap the fleet (2 instances per version by default).
        fleet = ["--no-worker", "--max-instances", "8", "--max-instances-per-account", "16"]
        single = Registry(scratch, "fleet1", database=database("bench_fleet1"), replicas=2, extra=fleet, workers=1)
        double = Registry(scratch, "fleet2", database=database("bench_fleet2"), replicas=2, extra=fleet, workers=2)
        registries += [single, double]
        for registry in (single, double):
            registry.push(sleeper, "sleeper")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:  # boots every instance
                list(pool.map(lambda index: registry.predict("sleeper", f"boot{index}"), range(16)))
        rates = {"one": [], "two": []}
        for _ in range(3):
            rates["one"].append(throughput(single))
            rates["two"].append(throughput(double))
        print(f"sequential hello p50: SQLite {p50['sqlite'] * 1000:.2f} ms, PostgreSQL {p50['pg'] * 1000:.2f} ms, "
              f"ratio {p50['pg'] / p50['sqlite']:.2f}x (bar <= 1.3x)")
        print(f"claim to processing on PostgreSQL (started_at - created_at): p50 {statistics.median(claims) * 1000:.2f} ms, "
              f"p99 {claims[int(len(claims) * 0.99) - 1] * 1000:.2f} ms (bar p99 <= 20 ms)")
        print(f"200 x 200 ms at concurrency 8: 1 replica {one:.1f}/s, 2 replicas behind nginx {two:.1f}/s, ratio {two / one:.2f}x (bar >= 1.6x)")
        ratios = [b / a for a, b in zip(rates["one"], rates["two"])]
        print("200 x 200 ms at concurrency 8, 2 API-only replicas behind nginx, workers given nginx's address: "
              + ", ".join(f"1 worker {a:.1f}/s, 2 workers {b:.1f}/s = {b / a:.2f}x" for a, b in zip(rates["one"], rates["two"]))
              + f"; median {statistics.median(ratios):.2f}x (bar >= 1.8x)")
    finally:
        for registry in registries:
            registry.stop()
        subprocess.run([os.path.join(ROOT, "scripts", "postgres"), "stop", cluster])
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
