"""Benchmarks of the author's toolchain, each beside its baseline on the same bytes.

- build: `lathe build` of a model with N MiB of weights (cold store, no stat cache) versus
  `openssl dgst -sha256` over the same file (SHA-256 at hardware speed), and `sha256sum`;
- rebuild: `lathe build` of the unchanged project (stat cache hit);
- memory: peak RSS of `lathe build` with 64 MiB and N MiB of weights (flat means streaming);
- predict: `lathe predict samples/hello` with a warm environment, end to end (process start,
  spec check, sandbox, Python start, setup, prediction), versus `python3 -c pass`.
Each figure is the median of several runs; the page cache is warmed first so that disk speed
does not decide the result.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")


def run(command, env=None, cwd=None):
    """Runs a command; returns (seconds, peak RSS in MiB of it and its children)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024


def median_time(make_command, runs, prepare=None, env=None):
    times, peaks = [], []
    for _ in range(runs):
        if prepare:
            prepare()
        seconds, peak = run(make_command(), env=env)
        times.append(seconds)
        peaks.append(peak)
    return statistics.median(times), max(peaks)


def make_project(directory, size_mib):
    os.makedirs(os.path.join(directory, "weights"), exist_ok=True)
    with open(os.path.join(directory, "lathe.yaml"), "w") as spec:
        spec.write("name: bench/weights\npredict: predict.py:Predictor\ninputs:\n  text: {type: string}\n"
                   "output: {type: string}\nweights:\n  - path: weights/model.bin\n")
    with open(os.path.join(directory, "predict.py"), "w") as code:
        code.write("class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n")
    path = os.path.join(directory, "weights", "model.bin")
    with open(path, "wb") as out:
        chunk = os.urandom(1 << 20)
        for index in range(size_mib):
            out.write(chunk[:-8] + index.to_bytes(8, "little"))
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not os.path.exists(LATHE):
        sys.exit("build first: swift build -c release")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-")
    home = os.path.join(scratch, "home")
    env = dict(os.environ, LATHE_HOME=home)
    results = []
    try:
        project = os.path.join(scratch, "big")
        weights = make_project(project, args.size_mib)
        small = os.path.join(scratch, "small")
        make_project(small, 64)
        run(["cat", weights])  # warm the page cache

        def fresh_home():
            shutil.rmtree(home, ignore_errors=True)

        size = f"{args.size_mib} MiB"
        openssl, _ = median_time(lambda: ["openssl", "dgst", "-sha256", weights], args.runs)
        sha256sum, _ = median_time(lambda: ["sha256sum", weights], args.runs)
        build, build_peak = median_time(lambda: [LATHE, "build", project], args.runs, prepare=fresh_home, env=env)
        results.append((f"build, {size} of weights, cold", build, "openssl dgst -sha256", openssl, 1.3))
        results.append((f"build, {size} of weights, cold", build, "sha256sum", sha256sum, None))

        run([LATHE, "build", project], env=env)
        rebuild, _ = median_time(lambda: [LATHE, "build", project], args.runs, env=env)
        results.append(("unchanged rebuild (absolute bar 0.2 s)", rebuild, "openssl dgst -sha256", openssl, None))

        fresh_home()
        _, small_peak = run([LATHE, "build", small], env=env)

        run([LATHE, "predict", os.path.join(ROOT, "samples/hello"), "-i", "text=warm"], env=env)
        predict, _ = median_time(lambda: [LATHE, "predict", os.path.join(ROOT, "samples/hello"), "-i", "text=bench"], args.runs, env=env)
        python, _ = median_time(lambda: [sys.executable, "-c", "pass"], args.runs)
        results.append(("predict hello, warm environment (bar 1 s)", predict, "python3 -c pass", python, None))

        print(f"{'measure':44} {'lathe':>9}  {'baseline':24} {'baseline':>9}  {'ratio':>6}")
        for name, ours, baseline_name, baseline, bar in results:
            verdict = "" if bar is None else ("  ok (bar %.1fx)" % bar if ours / baseline <= bar else "  OVER (bar %.1fx)" % bar)
            print(f"{name:44} {ours:8.3f}s  {baseline_name:24} {baseline:8.3f}s  {ours / baseline:5.2f}x{verdict}")
        for name, value, unit, bar in [("peak RSS, lathe build with 64 MiB weights", small_peak, "MiB", 100),
                                        (f"peak RSS, lathe build with {size} weights", build_peak, "MiB", 100),
                                        ("unchanged rebuild", rebuild, "s", 0.2),
                                        ("lathe predict hello, warm", predict, "s", 1.0)]:
            verdict = "ok" if value < bar else "OVER"
            print(f"{name:44} {value:8.3f} {unit:3}  bar {bar} {unit}: {verdict}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
