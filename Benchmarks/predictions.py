"""Prediction overhead: the `hello` sample through `POST /v1/predictions` with `Prefer: wait` on
`lathe serve` (token checked, every prediction persisted in SQLite) versus the same predictor
under Cog's own server (`python -m cog.server.http` from the PyPI package `cog`, no Docker),
same machine, same client, same concurrency, both servers up and taking turns in rounds of 50
requests. Also cold boots: the first prediction after a push
(environment cached) for `hello` and `minilm`.

Usage: python3 Benchmarks/predictions.py [--requests 300] [--concurrency 4]
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
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = next((path for path in (os.path.join(ROOT, ".build-release", "release", "lathe"), os.path.join(ROOT, ".build", "release", "lathe"))
              if os.path.exists(path)), os.path.join(ROOT, ".build", "release", "lathe"))


def post(url, body, headers):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=dict(headers, **{"Content-Type": "application/json"}))
    started = time.perf_counter()
    for _ in range(1000):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer = json.loads(response.read())
            break
        except urllib.error.HTTPError as error:
            # Cog answers 409 while its single slot is still being released after the previous
            # answer; a client retries, and the wait counts in the latency.
            if error.code != 409:
                raise
            time.sleep(0.001)
    return time.perf_counter() - started, answer


def load(url, body, headers, requests, concurrency, check, raw=False):
    if not raw:
        post(url, body, headers)  # warm
    latencies = []
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for seconds, answer in pool.map(lambda _: post(url, body, headers), range(requests)):
            assert check(answer), answer
            latencies.append(seconds)
    elapsed = time.perf_counter() - started
    if raw:
        return latencies, elapsed
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], requests / elapsed


def summarize(rounds):
    """p50, p99 and throughput over rounds of (latencies, elapsed seconds)."""
    latencies = sorted(seconds for round_latencies, _ in rounds for seconds in round_latencies)
    elapsed = sum(seconds for _, seconds in rounds)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], len(latencies) / elapsed


def start_lathe(scratch, *extra):
    data = os.path.join(scratch, "data")
    os.makedirs(scratch, exist_ok=True)
    subprocess.run([LATHE, "admin", "user", "create", "bench", "--data", data], check=True, stdout=subprocess.DEVNULL)
    token = subprocess.run([LATHE, "admin", "token", "create", "bench", "--data", data], check=True, capture_output=True, text=True).stdout.strip()
    process = subprocess.Popen([LATHE, "serve", "--data", data, "--port", "0", "--log-level", "error", *extra], stdout=subprocess.PIPE, text=True)
    url = "http://" + re.search(r"127\.0\.0\.1:\d+", process.stdout.readline()).group(0)
    return process, url, token, data


def push(sample, url, token, home):
    env = dict(os.environ, LATHE_HOME=home, LATHE_REGISTRY=url, LATHE_TOKEN=token)
    out = subprocess.run([LATHE, "push", os.path.join(ROOT, "samples", sample), f"bench/{sample}", "--json"], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["version"]


def cold_boot(sample, body, url, token, version):
    seconds, answer = post(f"{url}/v1/predictions", {"version": version, "input": body},
                           {"Authorization": f"Bearer {token}", "Prefer": "wait"})
    assert answer["status"] == "succeeded", answer
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    # Cog answers 409 when its one slot is busy (a sync predictor), so both run one at a time.
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    if not os.path.exists(LATHE):
        sys.exit("build first: swift build -c release")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-predict-")
    try:
        # Cog's server in its own virtual environment, from PyPI.
        venv = os.path.join(ROOT, ".venv-bench")
        if not os.path.exists(os.path.join(venv, "bin", "python")) or subprocess.run(
                [os.path.join(venv, "bin", "python"), "-c", "import cog"], capture_output=True).returncode != 0:
            subprocess.run(["uv", "venv", "--quiet", "--python", "python3", venv], check=True)
            subprocess.run(["uv", "pip", "install", "--quiet", "--python", os.path.join(venv, "bin", "python"), "cog==0.23.1"], check=True)

        process, url, token, data = start_lathe(scratch, "--max-instances", "1")
        home = os.path.join(scratch, "home")
        version = push("hello", url, token, home)

        port = 5000 + os.getpid() % 1000
        # coglet starts its Python worker with the `python` on PATH: the virtual environment first.
        cog_env = dict(os.environ, PORT=str(port), COG_PREDICT_TYPE_STUB="predict.py:Predictor", COG_LOG_LEVEL="error",
                       PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
        cog = subprocess.Popen([os.path.join(venv, "bin", "python"), "-m", "cog.server.http", "--host", "127.0.0.1"],
                               cwd=os.path.join(ROOT, "samples", "hello"), env=cog_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health-check", timeout=1) as answer:
                    if json.loads(answer.read()).get("status") == "READY":
                        break
            except Exception:
                pass
            time.sleep(0.2)
        # Both servers stay up and take turns in rounds of 50, so that the machine's drift (this
        # is a shared 2-core VM) falls on both alike.
        targets = {
            "lathe": (f"{url}/v1/predictions", {"version": version, "input": {"text": "bench"}},
                      {"Authorization": f"Bearer {token}", "Prefer": "wait"}),
            "cog": (f"http://127.0.0.1:{port}/predictions", {"input": {"text": "bench"}}, {}),
        }
        samples = {name: [] for name in targets}
        for name, (target, body, headers) in targets.items():
            post(target, body, headers)  # warm
        rounds = max(1, args.requests // 50)
        for _ in range(rounds):
            for name, (target, body, headers) in targets.items():
                samples[name].append(load(target, body, headers, args.requests // rounds, args.concurrency,
                                          lambda answer: answer["output"] == "Hello, bench!", raw=True))
        lathe, cog_result = (summarize(samples["lathe"]), summarize(samples["cog"]))
        process.terminate()
        process.wait()
        cog.terminate()
        cog.wait()

        print(f"hello, {args.requests} predictions, concurrency {args.concurrency} (Lathe: one instance, token auth, SQLite)")
        print(f"  p50 latency: lathe {lathe[0] * 1000:.1f} ms, cog {cog_result[0] * 1000:.1f} ms, ratio {lathe[0] / cog_result[0]:.2f}x (bar 1.0x)")
        print(f"  p99 latency: lathe {lathe[1] * 1000:.1f} ms, cog {cog_result[1] * 1000:.1f} ms, ratio {lathe[1] / cog_result[1]:.2f}x")
        print(f"  throughput: lathe {lathe[2]:.0f}/s, cog {cog_result[2]:.0f}/s, ratio {lathe[2] / cog_result[2]:.2f}x")

        # Cold boots: a first server run builds the environments; the server is then restarted
        # on the same data (no instance survives a restart) and the samples pushed again.
        subprocess.run([sys.executable, os.path.join(ROOT, "samples", "minilm", "fetch_weights.py")], check=True)
        cold = os.path.join(scratch, "cold")
        process, url, token, data = start_lathe(cold)
        inputs = {"hello": {"text": "cold"}, "minilm": {"sentences": ["A cold boot."]}}
        versions = {sample: push(sample, url, token, home) for sample in inputs}
        for sample in versions:
            cold_boot(sample, inputs[sample], url, token, versions[sample])
        process.terminate()
        process.wait()
        process = subprocess.Popen([LATHE, "serve", "--data", data, "--port", "0", "--log-level", "error"], stdout=subprocess.PIPE, text=True)
        url = "http://" + re.search(r"127\.0\.0\.1:\d+", process.stdout.readline()).group(0)
        for sample in versions:
            push(sample, url, token, home)
            seconds = cold_boot(sample, inputs[sample], url, token, versions[sample])
            bar = 1 if sample == "hello" else 5
            print(f"cold boot of {sample} (first prediction after push, environment cached): {seconds:.2f} s (bar {bar} s)")
        process.terminate()
        process.wait()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
