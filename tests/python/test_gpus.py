"""GPUs on one machine (issue 20 item 2), without a GPU: a fake `nvidia-smi` on PATH and fake
device nodes (LATHE_GPU_DEVICE_DIR). `lathe serve` alone offers the machine's GPUs as `lathe
worker` does, an instance's sandbox sees only its own /dev/nvidiaN (and the driver's control
node), CUDA_VISIBLE_DEVICES names its GPU by UUID; `lathe predict --gpus` gives them locally."""
import os
import subprocess

import httpx
import pytest

from conftest import LATHE, Server, Worker, lathe

UUIDS = ["GPU-8a1f3c52-1111-2222-3333-444455556666", "GPU-9b2e4d63-aaaa-bbbb-cccc-ddddeeeeffff"]
SPEC = 'python: "3.11"\npredict: predict.py:Predictor\ninputs: {}\noutput: {type: string}\n'
PROBE = """import os

class Predictor:
    def predict(self) -> str:
        nodes = sorted(name for name in os.listdir("/dev") if name.startswith("nvidia"))
        return os.environ.get("CUDA_VISIBLE_DEVICES", "") + "|" + ",".join(nodes)
"""


def fake_machine(folder, models):
    """A fake `nvidia-smi` listing one GPU per entry of `models` (with UUIDS), and their device nodes."""
    bin_dir, devices = folder / "bin", folder / "dev"
    bin_dir.mkdir(parents=True)
    devices.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\n" + "".join(
        f"echo '{index}, {uuid}, {model}, 81920'\n" for index, (uuid, model) in enumerate(zip(UUIDS, models))))
    os.chmod(bin_dir / "nvidia-smi", 0o755)
    for name in [f"nvidia{index}" for index in range(len(models))] + ["nvidiactl"]:
        (devices / name).write_text("")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LATHE_GPU_DEVICE_DIR": str(devices)}


@pytest.fixture()
def fake_gpus(tmp_path):
    return fake_machine(tmp_path, ["NVIDIA A100-SXM4-80GB"] * 2)


def project(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "lathe.yaml").write_text(SPEC)
    (folder / "predict.py").write_text(f"# {name}\n" + PROBE)  # a version of its own
    return folder


def test_lathe_serve_alone_offers_its_gpus_and_binds_one_per_instance(tmp_path, fake_gpus):
    server = Server("--idle-timeout", "300", samples=(), env=fake_gpus)
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        offered = httpx.get(f"{server.url}/v1/hardware", headers=headers).json()
        assert {"sku": "gpu-a100-sxm4-80gb", "name": "NVIDIA A100-SXM4-80GB GPU"} in offered, offered
        outputs = []
        for name in ["probe-a", "probe-b"]:
            pushed = subprocess.run([LATHE, "push", str(project(tmp_path, name)), f"alice/{name}"], capture_output=True, text=True, env=server.env)
            assert pushed.returncode == 0, pushed.stderr
            assert httpx.patch(f"{server.url}/v1/models/alice/{name}", json={"hardware": "gpu-a100-sxm4-80gb"}, headers=headers).status_code == 200
            done = httpx.post(f"{server.url}/v1/models/alice/{name}/predictions", json={"input": {}},
                              headers={**headers, "Prefer": "wait"}, timeout=120).json()
            assert done["status"] == "succeeded", done
            outputs.append(done["output"])
        # Two instances, each holding one whole GPU: its own node, the control node, its UUID.
        assert sorted(outputs) == [f"{UUIDS[0]}|nvidia0,nvidiactl", f"{UUIDS[1]}|nvidia1,nvidiactl"], outputs
        # The embedded worker is a member of the fleet (issue 20, item 2): a row in the store like
        # any `lathe worker`'s, with its GPUs, both instances counted against its slots.
        listing = lathe("admin", "workers", "--data", server.data, env=server.server_env).stdout
        row = next((line for line in listing.splitlines() if "\tembedded in r-" in line), None)
        assert row and "\tcpu,gpu-a100-sxm4-80gb\t" in row and "\t2 of " in row, listing
    finally:
        server.stop()


def test_lathe_predict_gives_a_local_model_the_machine_s_gpus(tmp_path, fake_gpus):
    folder = project(tmp_path, "local")
    env = dict(os.environ, **fake_gpus, LATHE_HOME=str(tmp_path / "home"))

    def predict(*extra):
        ran = subprocess.run([LATHE, "predict", str(folder), *extra], capture_output=True, text=True, env=env, timeout=300)
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.strip()

    assert predict() == f"{UUIDS[0]},{UUIDS[1]}|nvidia0,nvidia1,nvidiactl", "all of them by default"
    assert predict("--gpus", "1") == f"{UUIDS[0]}|nvidia0,nvidiactl"
    assert predict("--gpus", "none") == "|"
    refused = subprocess.run([LATHE, "predict", str(folder), "--gpus", "3"], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "--gpus 3 asks for more GPUs than this machine has (2)" in refused.stderr, refused.stderr


@pytest.mark.parametrize("where", ["embedded", "worker"])
def test_on_a_machine_with_two_gpu_models_an_instance_gets_the_model_its_hardware_names(tmp_path, where):
    """The embedded worker and `lathe worker` are one code path (issue 20 item 2): both give an
    instance a GPU of the model the version's hardware names, not merely the first free one."""
    machine = fake_machine(tmp_path / "machine", ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"])
    if where == "embedded":
        server = Server("--idle-timeout", "300", samples=(), env=machine)
    else:
        server = Server("--no-worker", "--idle-timeout", "300", samples=())
    try:
        if where == "worker":
            Worker(server, "gpus", env=machine)
        headers = {"Authorization": f"Bearer {server.token}"}
        offered = httpx.get(f"{server.url}/v1/hardware", headers=headers).json()
        a100 = next((item["sku"] for item in offered if "A100" in item["name"]), None)
        assert a100 and any("H100" in item["name"] for item in offered), offered
        pushed = subprocess.run([LATHE, "push", str(project(tmp_path, "probe")), "alice/probe"], capture_output=True, text=True, env=server.env)
        assert pushed.returncode == 0, pushed.stderr
        assert httpx.patch(f"{server.url}/v1/models/alice/probe", json={"hardware": a100}, headers=headers).status_code == 200
        done = httpx.post(f"{server.url}/v1/models/alice/probe/predictions", json={"input": {}},
                          headers={**headers, "Prefer": "wait"}, timeout=120).json()
        assert done["status"] == "succeeded", done
        # The A100 is the machine's second GPU: its own node and UUID, never the H100's.
        assert done["output"] == f"{UUIDS[1]}|nvidia1,nvidiactl", done["output"]
    finally:
        server.stop()
