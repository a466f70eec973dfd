"""What `concurrency: N` buys (issue 20): 8 simultaneous `Prefer: wait` predictions of an async
model that sleeps 1 s, on a deployment held to one instance, with `concurrency: 1` (the
baseline: one at a time, as every model ran before) beside `concurrency: 4`, on one server.
Prints each side's three rounds, the medians and their ratio.

Usage: python3 Benchmarks/concurrency.py   (uses .build/debug/lathe, or LATHE_BIN)
"""
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import httpx  # noqa: E402

from conftest import LATHE, Server  # noqa: E402
from test_concurrency import CODE, SPEC  # noqa: E402


def main():
    server = Server(samples=())
    medians = {}
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        for slots in (1, 4):
            folder = pathlib.Path(tempfile.mkdtemp()) / f"slots{slots}"
            folder.mkdir()
            (folder / "lathe.yaml").write_text(SPEC.replace("concurrency: 4", f"concurrency: {slots}"))
            (folder / "predict.py").write_text(CODE)
            subprocess.run([LATHE, "push", str(folder), f"alice/slots{slots}"], env=server.env, check=True, capture_output=True)
            version = httpx.get(f"{server.url}/v1/models/alice/slots{slots}", headers=headers).json()["latest_version"]["id"]
            httpx.post(f"{server.url}/v1/deployments", headers=headers, json={
                "name": f"slots{slots}", "model": f"alice/slots{slots}", "version": version, "hardware": "cpu",
                "min_instances": 0, "max_instances": 1}).raise_for_status()
            url = f"{server.url}/v1/deployments/alice/slots{slots}/predictions"
            httpx.post(url, json={"input": {"name": "warm", "seconds": 0}}, headers={**headers, "Prefer": "wait"}, timeout=120)

            def one(index):
                return httpx.post(url, json={"input": {"name": f"n{index}"}}, headers={**headers, "Prefer": "wait"}, timeout=60).json()["status"]

            rounds = []
            for _ in range(3):
                started = time.time()
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    statuses = list(pool.map(one, range(8)))
                assert set(statuses) == {"succeeded"}, statuses
                rounds.append(time.time() - started)
            medians[slots] = sorted(rounds)[1]
            print(f"concurrency {slots}: rounds {', '.join(f'{r:.2f} s' for r in rounds)}; median {medians[slots]:.2f} s")
        print(f"ratio (concurrency 4 / concurrency 1): {medians[4] / medians[1]:.3f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
