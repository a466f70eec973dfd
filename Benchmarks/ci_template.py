"""A CI publish job, from tag to pushed version: the workflow `lathe init` writes now (download the
release tarball, check its SHA-256, unpack, validate, build, push) against the one it wrote before
(clone Lathe's source, `swift build -c release`, validate, push), side by side against the same
fresh registry, for the same freshly initialized project.

Needs `make dist` first (the tarball under dist/). The baseline compiles Lathe from a clone of this
checkout into an empty build folder, as a CI runner would: it takes minutes.

    make dist && python3 Benchmarks/ci_template.py
"""
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry import Server  # noqa: E402


def serve(folder):
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=folder)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def steps_of(workflow, values):
    """The `run:` steps of the workflow's publish job, with ${{ … }} filled in, and the job's env."""
    job = yaml.safe_load(open(workflow))["jobs"]["publish"]
    fill = lambda text: re.sub(r"\$\{\{\s*([^}]*?)\s*\}\}", lambda m: values[m.group(1)], str(text))  # noqa: E731
    env = {key: fill(value) for key, value in job.get("env", {}).items()}
    return [(step["name"], fill(step["run"]), {k: fill(v) for k, v in step.get("env", {}).items()}) for step in job["steps"] if "run" in step], env


def run_job(steps, job_env, project, runner, ref):
    """Runs the steps as GitHub does (bash -eo pipefail, GITHUB_PATH prepended); returns seconds."""
    github_path = os.path.join(runner, "github_path")
    open(github_path, "w").close()
    base = dict(os.environ, RUNNER_TEMP=runner, GITHUB_PATH=github_path, GITHUB_REF_NAME=ref, LATHE_HOME=os.path.join(runner, "home"), **job_env)
    started = time.monotonic()
    for name, script, env in steps:
        if "apt-get" in script and "sudo apt-get update && sudo apt-get install" in script.splitlines()[0]:
            script = "\n".join(script.splitlines()[1:])  # the baseline's unconditional apt-get: packages are installed here
        added = [line for line in open(github_path).read().splitlines() if line]
        environment = dict(base, **env, PATH=":".join(added[::-1] + [os.environ["PATH"]]))
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=project, env=environment,
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"step {name!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.monotonic() - started


BASELINE = """
jobs:
  publish:
    steps:
      - name: Install Lathe
        run: |
          git clone --quiet --depth 1 "${{ vars.LATHE_SOURCE }}" "$RUNNER_TEMP/lathe"
          swift build -c release --package-path "$RUNNER_TEMP/lathe"
          echo "$RUNNER_TEMP/lathe/.build/release" >> "$GITHUB_PATH"
      - name: Validate
        run: lathe validate
      - name: Push
        run: lathe push --json --registry "${{ vars.LATHE_REGISTRY }}" . "${{ vars.LATHE_MODEL }}:$GITHUB_REF_NAME"
        env:
          LATHE_TOKEN: ${{ secrets.LATHE_TOKEN }}
"""


def main():
    sums = os.path.join(ROOT, "dist", "SHA256SUMS")
    if not os.path.exists(sums):
        sys.exit("make dist first")
    digest, name = open(sums).read().split()
    lathe = os.path.join(ROOT, ".build-release", "release", "lathe")
    scratch = tempfile.mkdtemp(prefix="lathe-bench-ci-")
    tarballs = serve(os.path.join(ROOT, "dist"))
    registry = Server(scratch, lathe=lathe)
    try:
        values = {"vars.LATHE_REGISTRY": registry.url, "vars.LATHE_TARBALL_URL": f"http://127.0.0.1:{tarballs.server_address[1]}/{name}",
                  "vars.LATHE_TARBALL_SHA256": digest, "vars.LATHE_SOURCE": f"file://{ROOT}", "secrets.LATHE_TOKEN": registry.token}
        times = {}
        for label, model in [("tarball (now)", "bench/now"), ("compile (before)", "bench/before")]:
            project = os.path.join(scratch, model.replace("/", "-"))
            runner = os.path.join(scratch, model.replace("/", "-") + "-runner")
            os.makedirs(runner)
            subprocess.run([lathe, "init", project], check=True, capture_output=True)
            values["vars.LATHE_MODEL"] = model
            if label.startswith("tarball"):
                steps, env = steps_of(os.path.join(project, ".github", "workflows", "lathe.yml"), values)
            else:
                path = os.path.join(scratch, "baseline.yml")
                open(path, "w").write(BASELINE)
                steps, env = steps_of(path, values)
            times[label] = run_job(steps, env, project, runner, "v1.0.0")
            print(f"{label:18} {times[label]:8.1f} s  tag to pushed version", flush=True)
        now, before = times["tarball (now)"], times["compile (before)"]
        print(f"ratio: the tarball job takes {now / before:.4f}x the compiling job ({before / now:.0f}x faster); "
              f"tarball {os.path.getsize(os.path.join(ROOT, 'dist', name)) / 1048576:.1f} MiB")
    finally:
        registry.stop()
        tarballs.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
