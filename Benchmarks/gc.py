"""Garbage collection over many prediction outputs (issue 21 item 3), side by side: `lathe admin
gc --dry-run` of a baseline build (which reads and decodes every output that names a file) and of
a candidate build (which looks up only the output files it finds, by token, in `output_files`),
each on its own copy of the same data folder: N predictions (default 100,000) on SQLite, each
naming one output file older than the grace period, plus 1% orphans no prediction names.

The candidate's first run also migrates the database (migration 14 builds the index from the
outputs once); its later runs are the steady state. Prints each run's time and peak RSS and the
candidate/baseline ratios.

Usage: python3 Benchmarks/gc.py --baseline OLD_LATHE --candidate NEW_LATHE [--outputs 100000] [--runs 3]
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time



def run(command, env):
    """Runs a command; returns (seconds, its peak RSS in MiB, its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"failed: {' '.join(command)}\n{err.read().decode()}")
        return elapsed, usage.ru_maxrss / 1024, out.read().decode()


def make_data(lathe, folder, outputs):
    """A data folder whose database the baseline migrated, with `outputs` predictions and files."""
    env = dict(os.environ, LATHE_HOME=os.path.join(folder, "home"))
    subprocess.run([lathe, "admin", "gc", "--data", folder, "--dry-run"], env=env, check=True, capture_output=True)
    database = sqlite3.connect(os.path.join(folder, "registry.sqlite"))
    rows, orphans = [], max(1, outputs // 100)
    for index in range(outputs + orphans):
        token = f"{index:048x}"
        path = os.path.join(folder, "outputs", token)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "out.png"), "wb") as file:
            file.write(b"x" * 64)
        os.utime(os.path.join(path, "out.png"), (1, 1))
        if index < outputs:
            output = json.dumps({"image": f"http://localhost:5000/files/{token}/out.png", "caption": "a caption " * 20})
            rows.append((f"p{index:025d}", "m", "alice/hello", "v", "u", "api", "succeeded", "{}", output, "", "2026-01-01T00:00:00Z"))
    database.executemany("""INSERT INTO predictions (id, model_id, model, version, creator_id, source, status, input, output, logs, created_at)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", rows)
    database.commit()
    database.close()
    return orphans


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="lathe-bench-gc-")
    try:
        base = os.path.join(scratch, "base")
        os.makedirs(base)
        orphans = make_data(args.baseline, base, args.outputs)
        copies = {}
        for name in ("baseline", "candidate"):
            copies[name] = os.path.join(scratch, name)
            shutil.copytree(base, copies[name])
        results = {name: [] for name in copies}
        first = None
        for index in range(args.runs + 1):
            for name, lathe in (("baseline", args.baseline), ("candidate", args.candidate)):
                env = dict(os.environ, LATHE_HOME=os.path.join(copies[name], "home"))
                command = [lathe, "admin", "gc", "--data", copies[name], "--dry-run"]
                seconds, rss, report = run(command, env=env)
                assert f"would remove {orphans} objects" in report, report[-500:]
                if index == 0 and name == "candidate":
                    first = (seconds, rss)  # includes migration 14 (the one full read)
                elif index > 0:
                    results[name].append((seconds, rss))
        print(f"{args.outputs} outputs (+{orphans} orphans), lathe admin gc --dry-run, {args.runs} runs each:")
        for name, values in results.items():
            print(f"  {name}: " + ", ".join(f"{seconds:.2f}s/{rss:.0f} MiB" for seconds, rss in values))
        print(f"  candidate's first run, with the migration that indexes the existing outputs: {first[0]:.2f}s/{first[1]:.0f} MiB")
        time_ratio = statistics.median(s for s, _ in results["candidate"]) / statistics.median(s for s, _ in results["baseline"])
        rss_ratio = statistics.median(r for _, r in results["candidate"]) / statistics.median(r for _, r in results["baseline"])
        print(f"  candidate / baseline: time {time_ratio:.2f}x, peak RSS {rss_ratio:.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
