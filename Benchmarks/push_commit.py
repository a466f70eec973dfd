"""What checking a blob as stored costs a push (issue 19): `lathe push` of N MiB of weights to a
files-backed `lathe serve`, one binary against another on the same bytes, alternating runs, a
fresh server each run. The baseline is a build of the commit before the check (the server kept a
running hash); the candidate hashes the upload file as it lies on disk at commit and checks local
blobs once before serving them. Prints each median, the ratio, and each server's peak RSS.

Usage: python3 Benchmarks/push_commit.py --baseline PATH/TO/lathe --candidate PATH/TO/lathe [--size-mib 512] [--runs 3]
(build the baseline with `git worktree add /tmp/base COMMIT && swift build --product lathe` there,
or check the commit out, build, and copy .build/debug/lathe aside).
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry import Server  # noqa: E402
from toolchain import make_project, run  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="lathe-bench-push-commit-")
    try:
        project = os.path.join(scratch, "project")
        make_project(project, args.size_mib)
        times = {"baseline": [], "candidate": []}
        peaks = {"baseline": [], "candidate": []}
        for _ in range(args.runs):
            for name in ("baseline", "candidate"):
                lathe = getattr(args, name)
                server = Server(scratch, lathe=lathe)
                home = tempfile.mkdtemp(dir=scratch, prefix="home-")
                env = dict(os.environ, LATHE_HOME=home, LATHE_REGISTRY=server.url, LATHE_TOKEN=server.token)
                run([lathe, "build", project], env=env)  # hashing the weights is not what is measured
                seconds, _ = run([lathe, "push", project, "bench/m"], env=env)
                times[name].append(seconds)
                peaks[name].append(server.peak_rss_mib())
                server.stop()
                shutil.rmtree(home, ignore_errors=True)
        base, cand = statistics.median(times["baseline"]), statistics.median(times["candidate"])
        print(f"push of {args.size_mib} MiB, files backend, median of {args.runs}:")
        print(f"  baseline  {base:.2f} s  (runs {', '.join(f'{t:.2f}' for t in times['baseline'])}; server peak RSS {max(peaks['baseline']):.0f} MiB)")
        print(f"  candidate {cand:.2f} s  (runs {', '.join(f'{t:.2f}' for t in times['candidate'])}; server peak RSS {max(peaks['candidate']):.0f} MiB)")
        print(f"  candidate / baseline = {cand / base:.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
