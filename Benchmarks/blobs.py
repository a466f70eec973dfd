"""Blobs in S3 (SeaweedFS's gateway, started here) against the gateway's own speed and against
blobs in files under --data, side by side in one run: `lathe push` and `lathe pull` of a version
with N MiB of weights (default 512), the pull both with the registry's 307 to a presigned URL
(the default) and streamed through the server (--blob-redirect=false), and in the same rounds
the AWS CLI's `aws s3 cp` of the same weights file up to and down from the same gateway (the
baseline: issue 21's bars are push <= 1.10x and pull <= 1.1x that). Prints median times, the
ratios and each server's peak RSS (VmHWM; bar: under 150 MiB: blobs are streamed, never held whole).

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
        times = {(kind, step): [] for kind in list(kinds) + ["aws"] for step in ("push", "pull")}
        peaks = {kind: 0.0 for kind in kinds}
        if not shutil.which("aws"):
            sys.exit("the baseline needs the AWS CLI (pip install awscli)")
        aws_env = dict(os.environ, AWS_ACCESS_KEY_ID="lathetest", AWS_SECRET_ACCESS_KEY="lathetestsecret")
        weights = os.path.join(project, "weights", "model.bin")
        for index in range(args.runs):
            # The storage's own speed, in the same round: the AWS CLI (parallel multipart) up and down.
            seconds, _ = run(["aws", "--endpoint-url", s3, "s3", "cp", "--quiet", weights, f"s3://lathe/aws-{index}"], env=aws_env)
            times[("aws", "push")].append(seconds)
            down = os.path.join(scratch, "aws-down.bin")
            seconds, _ = run(["aws", "--endpoint-url", s3, "s3", "cp", "--quiet", f"s3://lathe/aws-{index}", down], env=aws_env)
            times[("aws", "pull")].append(seconds)
            os.remove(down)
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
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"{args.size_mib} MiB of weights over loopback, {args.runs} rounds (SeaweedFS {s3}):")
        for key, values in sorted(times.items()):
            print(f"  {key[0]:>11} {key[1]}: " + ", ".join(f"{value:.2f}s" for value in values) + f"; median {median[key]:.2f}s")
        for step, bar in (("push", 1.10), ("pull", 1.1)):
            aws, lathe_s3 = median[("aws", step)], median[("s3", step)]
            print(f"  {step}: lathe {lathe_s3:.2f}s / aws s3 cp {aws:.2f}s = {lathe_s3 / aws:.2f}x (bar <= {bar}x); "
                  f"files backend {median[('files', step)]:.2f}s")
        streamed = median[("s3-streamed", "pull")]
        print(f"  pull from S3: 307 to a presigned URL {median[('s3', 'pull')]:.2f}s, streamed through the server {streamed:.2f}s, "
              f"ratio {median[('s3', 'pull')] / streamed:.2f}x")
        print("  peak RSS of the server: " + ", ".join(f"{kind} {peak:.0f} MiB" for kind, peak in peaks.items()) + " (bar < 150 MiB)")
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "seaweedfs"), "stop", weed])
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
