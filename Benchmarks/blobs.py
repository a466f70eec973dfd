"""Blobs in S3 (SeaweedFS's gateway, started here) against blobs in files under --data, side by
side in one run: `lathe push` and `lathe pull` of a version with N MiB of weights (default 512),
the pull both with the registry's 307 to a presigned URL (the default) and streamed through the
server (--blob-redirect=false). Prints median times, the S3/files ratios (bar: at most 1.5x) and
each server's peak RSS (VmHWM; bar: under 150 MiB: blobs are streamed, never held whole).

Usage: python3 Benchmarks/blobs.py [--size-mib 512] [--runs 3]   (after a release build)
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = next((path for path in (os.path.join(ROOT, ".build-release", "release", "lathe"), os.path.join(ROOT, ".build", "release", "lathe"))
              if os.path.exists(path)), None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry import Server  # noqa: E402
from toolchain import make_project, run  # noqa: E402


def server_for(scratch, s3=None, redirect=True):
    """`lathe serve` with blobs in files, or under a fresh prefix of the S3 bucket."""
    env = {}
    if s3:
        env = dict(LATHE_BLOBS=f"s3://lathe/bench-{uuid.uuid4().hex[:12]}", LATHE_S3_ENDPOINT=s3,
                   AWS_ACCESS_KEY_ID="lathetest", AWS_SECRET_ACCESS_KEY="lathetestsecret")
    return Server(scratch, env=env, extra=["--blob-redirect", "true" if redirect else "false"], lathe=LATHE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not LATHE:
        sys.exit("build first: swift build -c release --scratch-path .build-release")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-blobs-")
    weed = os.path.join(scratch, "seaweedfs")
    s3 = subprocess.run([os.path.join(ROOT, "scripts", "seaweedfs"), "start", weed], check=True, capture_output=True, text=True).stdout.strip()
    home = os.path.join(scratch, "home")
    env = dict(os.environ, LATHE_HOME=home)
    try:
        project = os.path.join(scratch, "project")
        make_project(project, args.size_mib)
        subprocess.run([LATHE, "build", project, "-t", "bench/weights:latest"], env=env, check=True, stdout=subprocess.DEVNULL)
        kinds = {"files": dict(s3=None), "s3": dict(s3=s3), "s3-streamed": dict(s3=s3, redirect=False)}
        times = {(kind, step): [] for kind in kinds for step in ("push", "pull")}
        peaks = {kind: 0.0 for kind in kinds}
        for _ in range(args.runs):
            for kind, options in kinds.items():
                server = server_for(scratch, **options)
                try:
                    for name in ("uploads.json", "pushed.json"):
                        if os.path.exists(os.path.join(home, name)):
                            os.remove(os.path.join(home, name))
                    push_env = dict(env, LATHE_TOKEN=server.token, LATHE_REGISTRY=server.url)
                    seconds, _ = run([LATHE, "push", "bench/weights:latest", "bench/weights"], env=push_env)
                    times[(kind, "push")].append(seconds)
                    fresh = tempfile.mkdtemp(dir=scratch, prefix="pull-")
                    seconds, _ = run([LATHE, "pull", "bench/weights"], env=dict(push_env, LATHE_HOME=fresh))
                    times[(kind, "pull")].append(seconds)
                    shutil.rmtree(fresh, ignore_errors=True)
                    peaks[kind] = max(peaks[kind], server.peak_rss_mib())
                finally:
                    server.stop()
        # The storage's own speed: the same weights file uploaded by the AWS CLI (parallel
        # multipart) to the same gateway, when the CLI is installed.
        aws_times = []
        if shutil.which("aws"):
            aws_env = dict(os.environ, AWS_ACCESS_KEY_ID="lathetest", AWS_SECRET_ACCESS_KEY="lathetestsecret")
            for index in range(args.runs):
                seconds, _ = run(["aws", "--endpoint-url", s3, "s3", "cp", "--quiet", os.path.join(project, "weights", "model.bin"),
                                  f"s3://lathe/aws-{index}"], env=aws_env)
                aws_times.append(seconds)
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"{args.size_mib} MiB of weights over loopback, median of {args.runs} (SeaweedFS {s3}):")
        for step in ("push", "pull"):
            files, s3_time = median[("files", step)], median[("s3", step)]
            print(f"  {step}: files {files:.2f}s, S3 {s3_time:.2f}s, ratio {s3_time / files:.2f}x (bar <= 1.5x)")
        if aws_times:
            aws = statistics.median(aws_times)
            print(f"  the gateway's own speed: aws s3 cp of the weights {aws:.2f}s = {aws / median[('files', 'push')]:.2f}x the files push; "
                  f"lathe push to S3 is {median[('s3', 'push')] / aws:.2f}x that")
        streamed = median[("s3-streamed", "pull")]
        print(f"  pull from S3: 307 to a presigned URL {median[('s3', 'pull')]:.2f}s, streamed through the server {streamed:.2f}s, "
              f"ratio {median[('s3', 'pull')] / streamed:.2f}x")
        print("  peak RSS of the server: " + ", ".join(f"{kind} {peak:.0f} MiB" for kind, peak in peaks.items()) + " (bar < 150 MiB)")
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "seaweedfs"), "stop", weed])
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
