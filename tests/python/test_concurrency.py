"""`concurrency: N` is honoured (issue 20 item 2): one instance answers up to N predictions at
once, each with its own logs, cancel and timeout, and placement counts free slots."""
import concurrent.futures
import os
import subprocess
import time

import httpx

from conftest import LATHE

SPEC = """python: "3.11"
predict: predict.py:Predictor
concurrency: 4
timeout: 3s
inputs:
  name: {type: string}
  seconds: {type: number, default: 1}
output: {type: string}
"""
CODE = """import asyncio
import uuid

class Predictor:
    async def setup(self):
        self.greeting = "hi"
        self.instance = uuid.uuid4().hex[:12]

    async def predict(self, name: str, seconds: float = 1) -> str:
        print("start", name, flush=True)
        await asyncio.sleep(seconds)
        print("end", name, flush=True)
        return f"{self.greeting} {name} from {self.instance}"
"""


def test_an_instance_with_concurrency_4_answers_8_predictions_in_about_2_seconds(server, tmp_path):
    project = tmp_path / "together"
    project.mkdir()
    (project / "lathe.yaml").write_text(SPEC)
    (project / "predict.py").write_text(CODE)
    pushed = subprocess.run([LATHE, "push", str(project), "alice/together"], capture_output=True, text=True, env=server.env, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    headers = {"Authorization": f"Bearer {server.token}"}
    version = httpx.get(f"{server.url}/v1/models/alice/together", headers=headers).json()["latest_version"]["id"]
    # A deployment of at most one instance: everything below runs on that one.
    deployed = httpx.post(f"{server.url}/v1/deployments", headers=headers, json={
        "name": "together", "model": "alice/together", "version": version, "hardware": "cpu", "min_instances": 0, "max_instances": 1})
    assert deployed.status_code == 201, deployed.text
    url = f"{server.url}/v1/deployments/alice/together/predictions"
    warm = httpx.post(url, json={"input": {"name": "warm", "seconds": 0}}, headers={**headers, "Prefer": "wait"}, timeout=120).json()
    assert warm["status"] == "succeeded", warm
    pid = warm["output"].rsplit(" ", 1)[1]

    def run(index):
        answer = httpx.post(url, json={"input": {"name": f"n{index}"}}, headers={**headers, "Prefer": "wait"}, timeout=60)
        return answer.json()

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    elapsed = time.time() - started
    assert all(result["status"] == "succeeded" for result in results), results
    # One instance (concurrency 4): two rounds of 1 s, not eight.
    assert {result["output"].rsplit(" ", 1)[1] for result in results} == {pid}, [r["output"] for r in results]
    assert elapsed < 4, f"8 predictions of 1 s took {elapsed:.1f} s on an instance that runs 4 at once"
    for index, result in enumerate(results):
        assert result["logs"] == f"start n{index}\nend n{index}\n", result["logs"]

    # Cancelling one of four running leaves the other three running to the end; a timeout ends
    # only its own prediction.
    ids = [httpx.post(url, json={"input": {"name": f"c{index}", "seconds": 1.5}}, headers=headers).json()["id"] for index in range(3)]
    slow = httpx.post(url, json={"input": {"name": "slow", "seconds": 30}}, headers=headers).json()["id"]
    deadline = time.time() + 20
    while httpx.get(f"{server.url}/v1/predictions/{ids[0]}", headers=headers).json()["status"] != "processing":
        assert time.time() < deadline
        time.sleep(0.05)
    canceled = httpx.post(f"{server.url}/v1/predictions/{ids[0]}/cancel", headers=headers, timeout=30).json()
    assert canceled["status"] == "canceled", canceled
    deadline = time.time() + 30
    finished = {}
    while len(finished) < 4 and time.time() < deadline:
        for prediction in ids + [slow]:
            state = httpx.get(f"{server.url}/v1/predictions/{prediction}", headers=headers).json()
            if state["status"] in ("succeeded", "failed", "canceled"):
                finished[prediction] = state
        time.sleep(0.2)
    assert finished[ids[0]]["status"] == "canceled" and finished[ids[0]]["logs"] == "start c0\n", finished[ids[0]]
    for index in (1, 2):
        assert finished[ids[index]]["status"] == "succeeded", finished[ids[index]]
        assert finished[ids[index]]["logs"] == f"start c{index}\nend c{index}\n", finished[ids[index]]
    assert finished[slow]["status"] == "failed" and finished[slow]["error"] == "Prediction timed out", finished[slow]
    # And the instance lives on: the timeout did not kill it.
    after = httpx.post(url, json={"input": {"name": "after", "seconds": 0}}, headers={**headers, "Prefer": "wait"}, timeout=60).json()
    assert after["status"] == "succeeded" and after["output"].endswith(pid), after
