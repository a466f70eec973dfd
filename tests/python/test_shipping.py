"""Shipping Lathe itself: the release tarball runs on a machine without Swift or the checkout,
`make dist` is reproducible, `make install` / `make uninstall`, `lathe --version`, `lathe doctor`,
the systemd unit, and the CI templates `lathe init` writes, run step by step against a local
registry with the tarball served from loopback.

The tarball is built once per run (`scripts/package dist`: a release build with the Swift standard
library linked in). Packaging does not depend on the database or blob store, so these tests run in
the embedded pass only."""
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time

import httpx
import pytest
import yaml

from conftest import LATHE, POSTGRES, ROOT, Server, lathe

pytestmark = pytest.mark.skipif(bool(POSTGRES), reason="packaging is the same on every database: it runs in the embedded pass")

# What a fresh Debian machine has on PATH: no Swift (it lives in /opt/swift here), no pyenv shims.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VERSION = open(os.path.join(ROOT, "VERSION")).read().strip()


def commit():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def scratch():
    folder = tempfile.mkdtemp(prefix="lathe-shipping-")
    os.chmod(folder, 0o755)  # other users (nobody) run what is installed here
    return folder


def swift_toolchain():
    """The folder of the Swift toolchain the tests were built with (/opt/swift here), or None."""
    swift = shutil.which("swift")
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(swift)))) if swift else None


def without_swift(command, cwd, env=None, user=None):
    """Runs `command` as on a machine with no Swift and no Lathe checkout: a clean environment
    with the system PATH, and the Swift toolchain and this checkout hidden behind empty folders
    (bubblewrap over the whole root, so everything else is as it is). `user` runs it as that uid."""
    environment = {"PATH": SYSTEM_PATH, "HOME": cwd, "LANG": "C.UTF-8", **(env or {})}
    hidden = [folder for folder in [swift_toolchain(), ROOT] if folder and folder != "/"]
    wrapper = ["bwrap", "--dev-bind", "/", "/", *[part for folder in hidden for part in ("--tmpfs", folder)], "--chdir", cwd, "--"]
    if user is not None:
        wrapper += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return subprocess.run(wrapper + ["env", "-i", *[f"{k}={v}" for k, v in environment.items()], *command],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dist():
    """dist/lathe-VERSION-linux-ARCH.tar.gz and its SHA-256, made by `make dist`'s script."""
    made = subprocess.run([os.path.join(ROOT, "scripts", "package"), "dist"], capture_output=True, text=True, timeout=3600)
    assert made.returncode == 0, made.stdout + made.stderr[-4000:]
    sums = open(os.path.join(ROOT, "dist", "SHA256SUMS")).read().split()
    path = os.path.join(ROOT, "dist", sums[1])
    assert re.fullmatch(rf"lathe-{re.escape(VERSION)}-linux-(x86_64|aarch64)\.tar\.gz", sums[1])
    return path, sums[0]


@pytest.fixture(scope="module")
def unpacked(dist):
    folder = scratch()
    with tarfile.open(dist[0]) as archive:
        archive.extractall(folder, filter="tar")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_tarball_runs_predict_without_swift_or_the_checkout(dist, unpacked):
    shutil.copytree(os.path.join(ROOT, "samples", "hello"), os.path.join(unpacked, "samples", "hello"))
    binary = os.path.join(unpacked, "lathe", "lib", "lathe", "lathe")
    linked = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    assert "swift" not in linked and "Foundation" not in linked, f"the Swift runtime must be linked in:\n{linked}"
    # Exactly what the README says a newcomer types, in a clean environment.
    ran = without_swift(["./lathe/bin/lathe", "predict", "samples/hello", "-i", "text=hi"], cwd=unpacked)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "Hello, hi!\n"
    version = without_swift(["./lathe/bin/lathe", "--version"], cwd=unpacked)
    assert version.stdout.strip().startswith(f"{VERSION} (commit {commit()}"), version.stdout
    readme = open(os.path.join(unpacked, "lathe", "README.md")).read()
    for need in ["libarchive13", "libcmark-gfm", "bubblewrap", "python3", "uv", "lathe doctor"]:
        assert need in readme
    assert os.path.exists(os.path.join(unpacked, "lathe", "share", "lathe", "deploy", "lathe-serve.service"))
    assert os.path.exists(os.path.join(unpacked, "lathe", "share", "lathe", "deploy", "lathe-worker.service"))


def test_dist_is_the_same_bytes_twice_with_a_checksum(dist):
    path, digest = dist
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    assert subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=os.path.dirname(path), capture_output=True).returncode == 0
    again = subprocess.run([os.path.join(ROOT, "scripts", "package"), "dist"], capture_output=True, text=True, timeout=3600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest, "a second make dist of the same commit changed the tarball"
    epoch = int(subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"], capture_output=True, text=True).stdout)
    with tarfile.open(path) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mtime for m in members} == {epoch}
    assert all(not m.mode & 0o022 for m in members if not m.issym())
    # What differs between two clean builds of one commit: swiftc's random per-object module hash
    # (.swift_modhash) and the build ID over it. make dist zeroes the one and derives the other
    # from the file (a fresh clone built twice from an empty .build-release gave equal tarballs).
    folder = scratch()
    with tarfile.open(path) as archive:
        archive.extract("lathe/lib/lathe/lathe", folder, filter="tar")
    binary = os.path.join(folder, "lathe", "lib", "lathe", "lathe")
    dumped = os.path.join(folder, "modhash")
    subprocess.run(["objcopy", f"--dump-section=.swift_modhash={dumped}", binary, os.path.join(folder, "copy")], check=True)
    assert os.path.getsize(dumped) > 0 and set(open(dumped, "rb").read()) == {0}
    shutil.rmtree(folder, ignore_errors=True)


def tree(folder):
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def test_make_install_works_anywhere_for_anyone_and_uninstall_removes_exactly_that(dist):
    prefix = os.path.join(scratch(), "usr")
    # Someone else's files where completions go: they must survive.
    for kept in ["bin/other-tool", "share/zsh/site-functions/_other", "lib/other/lib.so"]:
        os.makedirs(os.path.dirname(os.path.join(prefix, kept)), exist_ok=True)
        open(os.path.join(prefix, kept), "w").write("not lathe's\n")
    before = tree(prefix)
    installed = subprocess.run(["make", "-C", ROOT, "install", f"PREFIX={prefix}"], capture_output=True, text=True, timeout=3600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert os.path.islink(os.path.join(prefix, "bin", "lathe"))
    completions = {"bash": "share/bash-completion/completions/lathe", "zsh": "share/zsh/site-functions/_lathe",
                   "fish": "share/fish/vendor_completions.d/lathe.fish"}
    for shell, path in completions.items():
        text = open(os.path.join(prefix, path)).read()
        assert "lathe" in text and "predict" in text, f"{shell} completion"
    # From another folder, as an unprivileged user, with the checkout and Swift out of sight.
    work = scratch()
    os.chmod(work, 0o777)
    lathe_bin = os.path.join(prefix, "bin", "lathe")
    made = without_swift([lathe_bin, "init", "greeter", "--ci", "gitlab"], cwd=work, user=65534)
    assert made.returncode == 0, made.stderr
    assert os.path.exists(os.path.join(work, "greeter", ".gitlab-ci.yml"))
    ran = without_swift([lathe_bin, "predict", "greeter", "-i", "text=you"], cwd=work, user=65534)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "Hello, you!\n"
    bash = subprocess.run(["bash", "-c", f"source {prefix}/{completions['bash']} && complete -p lathe"], capture_output=True, text=True)
    assert bash.returncode == 0 and "lathe" in bash.stdout, bash.stderr
    removed = subprocess.run(["make", "-C", ROOT, "uninstall", f"PREFIX={prefix}"], capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert tree(prefix) == before, "uninstall must remove exactly what install added"
    again = subprocess.run(["make", "-C", ROOT, "uninstall", f"PREFIX={prefix}"], capture_output=True, text=True)
    assert again.returncode != 0 and "was not installed" in again.stderr


def test_version_in_the_command_healthz_and_metrics():
    printed = lathe("--version").stdout.strip()
    assert re.fullmatch(rf"{re.escape(VERSION)} \(commit {commit()}(-modified)?\)", printed), printed
    running = Server("--metrics-token", "scrape-me", samples=())
    try:
        health = httpx.get(running.url + "/healthz").json()
        assert health["status"] == "ok" and health["version"] == VERSION and health["commit"].startswith(commit())
        metrics = httpx.get(running.url + "/metrics", headers={"Authorization": "Bearer scrape-me"}).text
        assert f'lathe_build_info{{version="{VERSION}",commit="{health["commit"]}"}} 1' in metrics.replace(".0\n", "\n"), metrics[:2000]
    finally:
        running.stop()


def test_doctor_says_what_is_missing_and_what_to_do():
    here = subprocess.run([LATHE, "doctor"], capture_output=True, text=True)
    assert here.returncode == 0, here.stdout + here.stderr
    for check in ["libarchive", "bubblewrap", "python3", "uv", "disk (LATHE_HOME)"]:
        assert re.search(rf"^(ok  |warn)  {re.escape(check)}", here.stdout, re.M), here.stdout
    # A machine with none of bubblewrap, python3 or uv on PATH.
    empty = scratch()
    bare = subprocess.run([LATHE, "doctor"], capture_output=True, text=True, env={"PATH": empty, "HOME": empty})
    assert bare.returncode == 1
    lines = bare.stdout
    assert re.search(r"^FAIL  bubblewrap .*-> apt-get install bubblewrap", lines, re.M), lines
    assert re.search(r"^FAIL  python3 .*-> apt-get install python3", lines, re.M), lines
    assert re.search(r"^FAIL  uv .*-> pip install uv", lines, re.M), lines
    assert "required checks failed: bubblewrap, python3, uv" in lines
    # systemd's ProtectKernelTunables covers /proc/sys read-only: an unprivileged sandbox can then
    # not mount its own /proc. doctor must catch that (namespaces alone still work there).
    if os.geteuid() == 0:
        covered = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                  "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
                                  f"exec setpriv --reuid=65534 --regid=65534 --clear-groups env HOME={empty} {LATHE} doctor"],
                                 capture_output=True, text=True)
        assert covered.returncode == 1, covered.stdout + covered.stderr
        assert re.search(r"^FAIL  bubblewrap .*as an unprivileged user.*drop ProtectKernelTunables", covered.stdout, re.M), covered.stdout
    # A server's stores: an unreachable PostgreSQL and S3 endpoint are named, with what to do.
    server = subprocess.run([LATHE, "doctor", "--server", "--database", "postgres://lathe:secret-pw@127.0.0.1:1/lathe",
                             "--blobs", "s3://bucket/x", "--s3-endpoint", "http://127.0.0.1:1"], capture_output=True, text=True,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "secret-key"})
    assert server.returncode == 1
    assert re.search(r"^FAIL  database +cannot reach PostgreSQL at 127\.0\.0\.1:1", server.stdout, re.M), server.stdout
    assert re.search(r"^FAIL  blob store ", server.stdout, re.M), server.stdout
    assert "secret-pw" not in server.stdout + server.stderr and "secret-key" not in server.stdout + server.stderr
    data = scratch()
    embedded = subprocess.run([LATHE, "doctor", "--server", "--data", data], capture_output=True, text=True)
    assert embedded.returncode == 0, embedded.stdout
    assert re.search(rf"^ok    database +SQLite at {re.escape(data)}/registry.sqlite", embedded.stdout, re.M), embedded.stdout


def test_systemd_unit_passes_systemd_analyze_verify(dist):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    folder = scratch()
    prefix = os.path.join(folder, "usr")
    installed = subprocess.run([os.path.join(ROOT, "scripts", "package"), "install", prefix], capture_output=True, text=True, timeout=3600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    for name in ["lathe-serve.service", "lathe-worker.service"]:
        unit = open(os.path.join(ROOT, "deploy", name)).read()
        for setting in ["User=lathe", "ProtectSystem=strict", "PrivateTmp=yes", "Restart=on-failure", "EnvironmentFile=", "NoNewPrivileges=yes"]:
            assert setting in unit, f"{name} lacks {setting}"
        # verify checks that ExecStart's program exists: point it at the installed binary.
        path = os.path.join(folder, name)
        open(path, "w").write(unit.replace("/usr/local/bin/lathe", os.path.join(prefix, "bin", "lathe")))
        verified = subprocess.run([analyze, "verify", path], capture_output=True, text=True)
        assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stdout + verified.stderr


class TarballServer:
    """dist/ over HTTP on loopback, as a release page would serve it."""

    def __init__(self, folder):
        handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=folder)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


def expand(text, values):
    """GitHub's ${{ vars.X }} / ${{ secrets.X }}; anything else is a template the test does not know."""
    def one(match):
        key = match.group(1).strip()
        assert key in values, f"the workflow uses ${{{{ {key} }}}}, which the test does not set"
        return values[key]
    return re.sub(r"\$\{\{([^}]*)\}\}", one, text)


def run_github_workflow(project, values, ref):
    workflow = yaml.safe_load(open(os.path.join(project, ".github", "workflows", "lathe.yml")))
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML 1.1 reads the key `on` as true
    job = workflow["jobs"]["publish"]
    runner_temp = tempfile.mkdtemp(prefix="runner-temp-", dir=project + "-runner")
    github_path = os.path.join(runner_temp, "github_path")
    open(github_path, "w").close()
    base = {"RUNNER_TEMP": runner_temp, "GITHUB_PATH": github_path, "GITHUB_REF_NAME": ref, "GITHUB_WORKSPACE": project,
            "LATHE_HOME": os.path.join(project + "-runner", "home")}
    base.update({key: expand(str(value), values) for key, value in job.get("env", {}).items()})
    steps = []
    for step in job["steps"]:
        if "uses" in step:
            assert step["uses"].startswith("actions/checkout@"), step  # the test's folder is the checkout
            continue
        env = dict(base, **{key: expand(str(value), values) for key, value in step.get("env", {}).items()})
        added = [line for line in open(github_path).read().splitlines() if line]
        env["PATH"] = ":".join(added[::-1] + [SYSTEM_PATH])
        # GitHub runs `run:` with bash --noprofile --norc -eo pipefail.
        result = without_swift(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", expand(step["run"], values)], cwd=project, env=env)
        steps.append((step["name"], result))
        if result.returncode != 0:
            break
    return steps


def test_ci_templates_install_the_tarball_and_publish_without_compiling(dist):
    path, digest = dist
    tarballs = TarballServer(os.path.dirname(path))
    registry = Server(samples=())
    folder = scratch()
    try:
        url = f"{tarballs.url}/{os.path.basename(path)}"
        values = {"vars.LATHE_REGISTRY": registry.url, "vars.LATHE_TARBALL_URL": url, "vars.LATHE_TARBALL_SHA256": digest,
                  "vars.LATHE_MODEL": "alice/from-ci", "secrets.LATHE_TOKEN": registry.token}

        # GitHub Actions: the workflow `lathe init` writes, step by step, for tag v1.0.0.
        project = os.path.join(folder, "hello-model")
        os.makedirs(project + "-runner")
        lathe("init", project)
        started = time.monotonic()
        steps = run_github_workflow(project, values, "v1.0.0")
        github_seconds = time.monotonic() - started
        for name, result in steps:
            assert result.returncode == 0, f"step {name!r} failed:\n{result.stdout}\n{result.stderr}"
        assert [name for name, _ in steps] == ["Install what Lathe runs with", "Install Lathe", "Validate", "Build", "Push"]
        pushed = json.loads(steps[-1][1].stdout)
        headers = {"Authorization": f"Bearer {registry.token}"}
        versions = httpx.get(f"{registry.url}/v1/models/alice/from-ci/versions", headers=headers).json()["results"]
        assert [v["id"] for v in versions] == [pushed["version"]]
        tagged = httpx.get(f"{registry.url}/v2/alice/from-ci/manifests/v1.0.0", headers={**headers, "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert tagged.status_code == 200

        # A tarball that does not match the checksum is refused before anything runs.
        tampered = os.path.join(folder, "other-model")
        os.makedirs(tampered + "-runner")
        lathe("init", tampered)
        bad = run_github_workflow(tampered, {**values, "vars.LATHE_TARBALL_SHA256": "0" * 64, "vars.LATHE_MODEL": "alice/tampered"}, "v1.0.0")
        assert bad[-1][0] == "Install Lathe" and bad[-1][1].returncode != 0
        assert "FAILED" in bad[-1][1].stdout + bad[-1][1].stderr
        assert httpx.get(f"{registry.url}/v1/models/alice/tampered", headers=headers).status_code == 404

        # GitLab CI: before_script and script in one shell, for tag v1.0.1.
        gitlab_project = os.path.join(folder, "gitlab-model")
        lathe("init", gitlab_project, "--ci", "gitlab")
        pipeline = yaml.safe_load(open(os.path.join(gitlab_project, ".gitlab-ci.yml")))["publish"]
        assert pipeline["rules"] == [{"if": "$CI_COMMIT_TAG =~ /^v/"}]
        script = "\n".join(["set -eo pipefail", *pipeline["before_script"], *pipeline["script"]])
        variables = {"LATHE_REGISTRY": registry.url, "LATHE_TARBALL_URL": url, "LATHE_TARBALL_SHA256": digest,
                     "LATHE_MODEL": "alice/from-gitlab", "LATHE_TOKEN": registry.token, "CI_COMMIT_TAG": "v1.0.1",
                     "CI_PROJECT_DIR": gitlab_project, "TMPDIR": folder, "LATHE_HOME": os.path.join(folder, "gitlab-home")}
        started = time.monotonic()
        ran = without_swift(["bash", "-c", script], cwd=gitlab_project, env=variables)
        gitlab_seconds = time.monotonic() - started
        assert ran.returncode == 0, ran.stdout + ran.stderr
        # The push's JSON object is the last thing printed (validate and build print before it).
        gitlab_version = json.loads(ran.stdout[ran.stdout.rindex("\n{") + 1:])["version"]
        versions = httpx.get(f"{registry.url}/v1/models/alice/from-gitlab/versions", headers=headers).json()["results"]
        assert [v["id"] for v in versions] == [gitlab_version]
        print(f"\nCI templates, tag to pushed version: GitHub steps {github_seconds:.1f} s, GitLab job {gitlab_seconds:.1f} s "
              f"(tarball {os.path.getsize(path) / 1048576:.1f} MiB)")
    finally:
        tarballs.close()
        registry.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_make_dist_and_install_fetch_what_compiling_needs_first(tmp_path):
    """On a fresh machine `make dist` once failed with "'archive.h' file not found": the release
    targets now install the build packages first (scripts/setup --build), as make demo does, or
    say the one apt command to run. Shown with stand-ins for dpkg, apt-get, sudo and id."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "dpkg").write_text("#!/bin/sh\n[ \"$2\" = libarchive-dev ] && exit 1\nexit 0\n")
    (fake / "apt-get").write_text(f"#!/bin/sh\necho \"apt-get $*\" >> {calls}\n")
    for script in ("dpkg", "apt-get"):
        os.chmod(fake / script, 0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    # The Makefile's release targets all go through build-deps.
    dry = subprocess.run(["make", "-n", "dist", "install", "release"], cwd=ROOT, capture_output=True, text=True)
    assert dry.stdout.count("scripts/setup --build") >= 1 and dry.stdout.index("scripts/setup --build") < dry.stdout.index("scripts/package"), dry.stdout
    ran = subprocess.run(["scripts/setup", "--build"], cwd=ROOT, capture_output=True, text=True, env=env)
    if os.getuid() == 0:
        assert ran.returncode == 0, ran.stderr
        assert open(calls).read().splitlines()[-1] == "apt-get install -y -qq libarchive-dev", open(calls).read()
        assert "chromium" not in open(calls).read(), "only what compiling needs"
    # Not root and no sudo: it stops with the command to run.
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")
    os.chmod(fake / "id", 0o755)
    no_sudo = dict(env, PATH=f"{fake}:/usr/bin:/bin")
    if shutil.which("sudo", path=no_sudo["PATH"]) is None:
        stopped = subprocess.run(["scripts/setup", "--build"], cwd=ROOT, capture_output=True, text=True, env=no_sudo)
        assert stopped.returncode == 1 and "as root, run: apt-get install -y libarchive-dev" in stopped.stderr, stopped.stderr
