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


POSTGRES = os.environ.get("LATHE_TEST_POSTGRES", "").rstrip("/")


def database_env(data):
    """LATHE_DATABASE_URL for a data folder: a fresh PostgreSQL database of its own when the tests
    run on PostgreSQL (LATHE_TEST_POSTGRES, set by scripts/test), nothing on SQLite."""
    if not POSTGRES:
        return {}
    import hashlib
    name = "p" + hashlib.sha256(os.path.abspath(data).encode()).hexdigest()[:16]
    subprocess.run(["psql", POSTGRES + "/postgres", "-qtAc", f"CREATE DATABASE {name}"], capture_output=True)
    return {"LATHE_DATABASE_URL": f"{POSTGRES}/{name}"}


def lathe(*args, env=None, check=True):
    result = subprocess.run([LATHE, *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"lathe {' '.join(args)} failed: {result.stderr}")
    return result


class Server:
    """`lathe serve` on a free loopback port with user alice (and bob) and some samples pushed."""

    def __init__(self, *extra, samples=("hello", "classifier", "image", "streamer"), preexec_fn=None):
        self.scratch = tempfile.mkdtemp(prefix="lathe-pytest-")
        data = os.path.join(self.scratch, "data")
        self.server_env = dict(os.environ, **database_env(data))
        lathe("admin", "user", "create", "alice", "--data", data, env=self.server_env)
        lathe("admin", "user", "create", "bob", "--data", data, env=self.server_env)
        self.token = lathe("admin", "token", "create", "alice", "--data", data, env=self.server_env).stdout.strip()
        self.bob = lathe("admin", "token", "create", "bob", "--data", data, env=self.server_env).stdout.strip()
        self.log_path = os.path.join(self.scratch, "serve.log")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([LATHE, "serve", "--data", data, "--port", "0", "--log-level", "info", *extra],
                                            stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=preexec_fn,
                                            env=self.server_env)
        line = self.process.stdout.readline()
        self.url = "http://" + re.search(r"127\.0\.0\.1:\d+", line).group(0)
        self.env = dict(os.environ, LATHE_HOME=os.path.join(self.scratch, "home"), LATHE_REGISTRY=self.url, LATHE_TOKEN=self.token)
        self.versions = {}
        for sample in samples:
            pushed = json.loads(lathe("push", os.path.join(ROOT, "samples", sample), f"alice/{sample}", "--json", env=self.env).stdout)
            self.versions[sample] = pushed["version"]

    def __getitem__(self, key):
        return getattr(self, key)

    def client(self, token=None):
        import replicate
        return replicate.Client(api_token=token or self.token, base_url=self.url)

    def log(self):
        """What the server has logged so far (for assertion messages)."""
        with open(self.log_path) as log:
            return log.read()[-4000:]

    def instances(self):
        """How many model processes of this server are running (their command lines name its data folder)."""
        envs = os.path.join(self.scratch, "data", "runtime", "envs").encode()
        count = 0
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if cmdline.read().split(b"\0")[0].startswith(envs):
                        count += 1
            except (OSError, ValueError):
                pass
        return count

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    # 127.0.0.2 stands for "another host" (URL inputs, webhook receivers); the rest of loopback stays refused.
    running = Server("--idle-timeout", "30", "--allow-outbound", "127.0.0.2/32")
    os.environ["REPLICATE_BASE_URL"] = running.url
    os.environ["REPLICATE_API_TOKEN"] = running.token
    os.environ["REPLICATE_POLL_INTERVAL"] = "0.1"
    yield running
    running.stop()
