"""Pushing 1 GiB of weights over loopback: `lathe push` versus `skopeo copy` of the same stored
version (from the local store's OCI layout) into a fresh `lathe serve` each run.

Reports median wall time of each, the ratio, and the peak RSS of the client (wait4) and of the
server (VmHWM from /proc) — flat memory means blobs are streamed, never held whole.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATHE = os.path.join(ROOT, ".build", "release", "lathe")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toolchain import make_project, run  # noqa: E402


class Server:
    """`lathe serve` on a fresh data folder; `env` and `extra` add settings (Benchmarks/blobs.py)."""

    def __init__(self, scratch, env=None, extra=(), lathe=None):
        lathe = lathe or LATHE
        self.data = tempfile.mkdtemp(dir=scratch, prefix="data-")
        self.env = dict(os.environ, **(env or {}))
        subprocess.run([lathe, "admin", "user", "create", "bench", "--data", self.data], check=True, stdout=subprocess.DEVNULL, env=self.env)
        self.token = subprocess.run([lathe, "admin", "token", "create", "bench", "--data", self.data], check=True,
                                    capture_output=True, text=True, env=self.env).stdout.strip()
        self.process = subprocess.Popen([lathe, "serve", "--data", self.data, "--port", "0", "--log-level", "error", *extra],
                                        stdout=subprocess.PIPE, text=True, env=self.env)
        line = self.process.stdout.readline()
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def peak_rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(LATHE):
        sys.exit("build first: swift build -c release")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-registry-")
    home = os.path.join(scratch, "home")
    env = dict(os.environ, LATHE_HOME=home)
    try:
        project = os.path.join(scratch, "project")
        make_project(project, args.size_mib)
        subprocess.run([LATHE, "build", project, "-t", "bench/weights:latest"], env=env, check=True, stdout=subprocess.DEVNULL)
        store = os.path.join(home, "store")
        lathe_times, skopeo_times, client_peaks, server_peaks, skopeo_server_peaks = [], [], [], [], []
        for _ in range(args.runs):
            server = Server(scratch)
            try:
                shutil.rmtree(os.path.join(home, "uploads.json"), ignore_errors=True)
                for name in ("uploads.json", "pushed.json"):
                    if os.path.exists(os.path.join(home, name)):
                        os.remove(os.path.join(home, name))
                push_env = dict(env, LATHE_TOKEN=server.token, LATHE_REGISTRY=server.url)
                seconds, peak = run([LATHE, "push", "bench/weights:latest", "bench/weights"], env=push_env)
                lathe_times.append(seconds)
                client_peaks.append(peak)
                server_peaks.append(server.peak_rss_mib())
            finally:
                server.stop()
            server = Server(scratch)
            try:
                seconds, _ = run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"bench:{server.token}",
                                  f"oci:{store}:bench/weights:latest", f"docker://127.0.0.1:{server.port}/bench/weights:latest"])
                skopeo_times.append(seconds)
                skopeo_server_peaks.append(server.peak_rss_mib())
            finally:
                server.stop()
        lathe, skopeo = statistics.median(lathe_times), statistics.median(skopeo_times)
        verdict = "ok (bar: at least as fast)" if lathe <= skopeo else "SLOWER than skopeo"
        print(f"push {args.size_mib} MiB over loopback: lathe push {lathe:.3f}s, skopeo copy {skopeo:.3f}s, ratio {lathe / skopeo:.2f}x  {verdict}")
        print(f"  runs: lathe {', '.join(f'{t:.2f}' for t in lathe_times)}; skopeo {', '.join(f'{t:.2f}' for t in skopeo_times)}")
        print(f"peak RSS: lathe push client {max(client_peaks):.1f} MiB; server during lathe push {max(server_peaks):.1f} MiB, "
              f"during skopeo copy {max(skopeo_server_peaks):.1f} MiB (bar 150 MiB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
