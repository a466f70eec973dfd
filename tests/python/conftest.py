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


# An S3 endpoint (SeaweedFS started by scripts/test) with bucket "lathe": blobs go there instead of --data.
S3 = os.environ.get("LATHE_TEST_S3", "").rstrip("/")


def database_env(data):
    """The environment a data folder's server and admin commands share: LATHE_DATABASE_URL, a
    fresh PostgreSQL database of its own when the tests run on PostgreSQL (LATHE_TEST_POSTGRES,
    set by scripts/test); LATHE_BLOBS, a fresh prefix in the S3 bucket when they run on S3
    (LATHE_TEST_S3). Nothing on the embedded defaults."""
    import hashlib
    name = "p" + hashlib.sha256(os.path.abspath(data).encode()).hexdigest()[:16]
    env = {}
    if POSTGRES:
        subprocess.run(["psql", POSTGRES + "/postgres", "-qtAc", f"CREATE DATABASE {name}"], capture_output=True)
        env["LATHE_DATABASE_URL"] = f"{POSTGRES}/{name}"
    if S3:
        env.update(LATHE_BLOBS=f"s3://lathe/{name}", LATHE_S3_ENDPOINT=S3, AWS_ACCESS_KEY_ID="lathetest", AWS_SECRET_ACCESS_KEY="lathetestsecret")
    return env


def stored_keys(server, prefix):
    """Keys under `prefix` ("files/", "uploads/", …) in a server's blob store: files under its data
    folder, or objects under its prefix in the S3 bucket (listed with curl's SigV4)."""
    blobs = server.server_env.get("LATHE_BLOBS")
    if blobs:
        import urllib.parse
        base = blobs[len("s3://lathe/"):].rstrip("/") + "/"
        listing = subprocess.run(["curl", "-sf", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "lathetest:lathetestsecret",
                                  f"{S3}/lathe?list-type=2&prefix={urllib.parse.quote(base + prefix, safe='')}"],
                                 capture_output=True, text=True, check=True).stdout
        return [key[len(base):] for key in re.findall(r"<Key>([^<]+)</Key>", listing)]
    found = []
    for root, _, names in os.walk(os.path.join(server.data, prefix)):
        found += [os.path.relpath(os.path.join(root, name), server.data) for name in names]
    return found


def lathe(*args, env=None, check=True):
    result = subprocess.run([LATHE, *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"lathe {' '.join(args)} failed: {result.stderr}")
    return result


class WebhookReceiver:
    """An HTTP server on 127.0.0.2 (what the tests treat as another host) that answers 200 to every
    POST and records it as (lower-cased headers, body text); use it with `with`."""

    def __init__(self):
        import http.server
        import threading
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.server.shutdown()


def model_processes(folder):
    """How many model processes run from environments under `folder` (their command line's
    program is an environment's python there)."""
    prefix = folder.encode()
    count = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().split(b"\0")[0]
                if command.startswith(prefix) and b"/envs/" in command:
                    count += 1
        except (OSError, ValueError):
            pass
    return count


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`lathe serve` on a free loopback port with user alice (and bob) and some samples pushed.
    With `replicas=2` (PostgreSQL only): two replicas on one database and one data folder, each
    with its own runtime folder, behind nginx with deploy/nginx.conf; `url` is nginx's."""

    def __init__(self, *extra, samples=("hello", "classifier", "image", "streamer"), preexec_fn=None, replicas=1, env=None):
        self.scratch = tempfile.mkdtemp(prefix="lathe-pytest-")
        self.data = data = os.path.join(self.scratch, "data")
        self.server_env = {**os.environ, **database_env(data), **(env or {})}
        lathe("admin", "user", "create", "alice", "--data", data, env=self.server_env)
        lathe("admin", "user", "create", "bob", "--data", data, env=self.server_env)
        self.token = lathe("admin", "token", "create", "alice", "--data", data, env=self.server_env).stdout.strip()
        self.bob = lathe("admin", "token", "create", "bob", "--data", data, env=self.server_env).stdout.strip()
        self.nginx = None
        extra = list(extra)
        if replicas > 1:
            assert POSTGRES, "replicas share a PostgreSQL database (LATHE_TEST_POSTGRES)"
            self.front_port = free_port()
            extra += ["--base-url", f"http://127.0.0.1:{self.front_port}", "--trusted-proxy", "127.0.0.1/32"]
        self.replicas = []
        for index in range(replicas):
            self.replicas.append(self.start_replica(index, extra, preexec_fn, runtime=replicas > 1))
        self.process, self.log_path, self.url = self.replicas[0]
        if replicas > 1:
            self.start_nginx()
        self.env = dict(os.environ, LATHE_HOME=os.path.join(self.scratch, "home"), LATHE_REGISTRY=self.url, LATHE_TOKEN=self.token)
        self.versions = {}
        for sample in samples:
            pushed = json.loads(lathe("push", os.path.join(ROOT, "samples", sample), f"alice/{sample}", "--json", env=self.env).stdout)
            self.versions[sample] = pushed["version"]

    def start_replica(self, index, extra, preexec_fn=None, runtime=False, port=0):
        """Starts replica `index` (again, on `port`, after a kill) and returns (process, log, url)."""
        log_path = os.path.join(self.scratch, f"serve-{index}.log" if index else "serve.log")
        arguments = [LATHE, "serve", "--data", self.data, "--port", str(port), "--log-level", "info", *extra]
        if runtime:
            arguments += ["--runtime", os.path.join(self.scratch, f"runtime-{index}")]
        with open(log_path, "a") as log:
            process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=preexec_fn, env=self.server_env)
        line = process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:\d+", line)
        if not match:
            raise AssertionError(f"lathe serve did not start: {line!r}\n" + open(log_path).read()[-3000:])
        return process, log_path, "http://" + match.group(0)

    def start_nginx(self):
        """nginx from deploy/nginx.conf, pointed at this cluster's replicas and front port."""
        with open(os.path.join(ROOT, "deploy", "nginx.conf")) as source:
            config = source.read()
        ports = [url.rsplit(":", 1)[1] for _, _, url in self.replicas]
        config = config.replace("127.0.0.1:8080", f"127.0.0.1:{self.front_port}")
        config = config.replace("server 127.0.0.1:8081", f"server 127.0.0.1:{ports[0]}")
        config = config.replace("server 127.0.0.1:8082", f"server 127.0.0.1:{ports[1]}")
        prefix = os.path.join(self.scratch, "nginx")
        os.makedirs(prefix, exist_ok=True)
        with open(os.path.join(prefix, "nginx.conf"), "w") as target:
            target.write(config)
        self.nginx = subprocess.Popen(["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(prefix, "error.log"), "w"))
        self.url = f"http://127.0.0.1:{self.front_port}"
        import time
        import urllib.request
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("nginx did not start: " + open(os.path.join(prefix, "error.log")).read())

    def __getitem__(self, key):
        return getattr(self, key)

    def client(self, token=None):
        import replicate
        return replicate.Client(api_token=token or self.token, base_url=self.url)

    def log(self):
        """What the server (every replica) has logged so far (for assertion messages)."""
        text = ""
        for _, path, _ in self.replicas:
            with open(path) as log:
                text += log.read()[-4000:]
        return text

    def instances(self):
        """How many model processes of this server are running (their command lines name its data folder)."""
        return model_processes(self.scratch)

    def worker_token(self, name="test"):
        return lathe("admin", "worker-token", "create", "--name", name, "--data", self.data, env=self.server_env).stdout.strip()

    def stop(self):
        for worker in getattr(self, "workers", []):
            worker.kill()
        for process, _, _ in self.replicas:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        if self.nginx:
            self.nginx.terminate()
            self.nginx.wait(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)


class Worker:
    """`lathe worker` for `server`: its own data folder, only HTTP to the server. `netns` runs it in
    that network namespace (then `registry` is the server's URL as seen from there)."""

    def __init__(self, server, name, *extra, token=None, netns=None, registry=None, env=None):
        self.name = name
        self.env = env or {}
        self.data = os.path.join(server.scratch, f"worker-{name}")
        self.log_path = os.path.join(server.scratch, f"worker-{name}.log")
        self.token = token or server.worker_token(name)
        self.registry = registry or server.url
        self.extra = list(extra)
        self.netns = netns
        self.process = None
        if not hasattr(server, "workers"):
            server.workers = []
        server.workers.append(self)
        self.start()

    def start(self, wait=True):
        import time
        before = self.registrations()
        command = [LATHE, "worker", "--registry", self.registry, "--data", self.data, "--name", self.name, *self.extra]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env, "LATHE_WORKER_TOKEN": self.token})
        deadline = time.time() + 30
        while wait and self.registrations() == before:
            if self.process.poll() is not None or time.time() > deadline:
                raise AssertionError(f"lathe worker {self.name} did not register:\n" + self.log())
            time.sleep(0.05)

    def registrations(self):
        return self.log().count("registered as")

    def log(self):
        try:
            with open(self.log_path) as log:
                return log.read()
        except OSError:
            return ""

    def instances(self):
        """Model processes this worker runs (their command lines name its data folder)."""
        return model_processes(self.data)

    def kill(self, signal=9):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal)
            if signal in (9, 15):
                self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def server():
    # 127.0.0.2 stands for "another host" (URL inputs, webhook receivers); the rest of loopback stays refused.
    # LATHE_TEST_REPLICAS=2 (with PostgreSQL) runs the suite through nginx in front of two replicas.
    # LATHE_TEST_WORKERS=2 runs it on an API-only server (--no-worker) with two `lathe worker`s.
    workers = int(os.environ.get("LATHE_TEST_WORKERS", "0"))
    extra = ["--no-worker", "--max-instances-per-account", "8", "--max-instances", "4"] if workers else []
    running = Server("--idle-timeout", "30", "--allow-outbound", "127.0.0.2/32", *extra, replicas=int(os.environ.get("LATHE_TEST_REPLICAS", "1")))
    for index in range(workers):
        Worker(running, f"w{index + 1}", "--max-instances", "4")
    os.environ["REPLICATE_BASE_URL"] = running.url
    os.environ["REPLICATE_API_TOKEN"] = running.token
    os.environ["REPLICATE_POLL_INTERVAL"] = "0.1"
    yield running
    running.stop()
