"""Fixtures: a real `lathe serve` on a free loopback port with the samples pushed to it, and the
official `replicate` client pointed at it through REPLICATE_BASE_URL / REPLICATE_API_TOKEN."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATHE = os.environ.get("LATHE_BIN", os.path.join(ROOT, ".build", "debug", "lathe"))


def lathe(*args, env=None, check=True):
    result = subprocess.run([LATHE, *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"lathe {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture(scope="session")
def server():
    scratch = tempfile.mkdtemp(prefix="lathe-pytest-")
    data = os.path.join(scratch, "data")
    lathe("admin", "user", "create", "alice", "--data", data)
    token = lathe("admin", "token", "create", "alice", "--data", data).stdout.strip()
    process = subprocess.Popen([LATHE, "serve", "--data", data, "--port", "0", "--log-level", "warning", "--idle-timeout", "30"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    url = "http://" + re.search(r"127\.0\.0\.1:\d+", line).group(0)
    env = dict(os.environ, LATHE_HOME=os.path.join(scratch, "home"), LATHE_REGISTRY=url, LATHE_TOKEN=token)
    versions = {}
    for sample in ["hello", "classifier", "image", "streamer"]:
        pushed = json.loads(lathe("push", os.path.join(ROOT, "samples", sample), f"alice/{sample}", "--json", env=env).stdout)
        versions[sample] = pushed["version"]
    os.environ["REPLICATE_BASE_URL"] = url
    os.environ["REPLICATE_API_TOKEN"] = token
    os.environ["REPLICATE_POLL_INTERVAL"] = "0.1"
    yield {"url": url, "token": token, "versions": versions, "env": env}
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(scratch, ignore_errors=True)
