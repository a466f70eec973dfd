"""Replicate's platform rules: data retention, deletion, sharing, examples, rate limits."""
import time

import httpx
import pytest
import replicate

from conftest import Server


def test_share_delete_examples_hardware_account(server):
    client = server.client()
    prediction = client.predictions.create(version=server.versions["hello"], input={"text": "shared"})
    prediction.wait()
    url = f"{server.url}/v1/predictions/{prediction.id}"
    assert httpx.get(url, headers={"Authorization": f"Bearer {server.bob}"}).status_code == 404, "unshared is invisible"
    assert httpx.post(url + "/share", headers={"Authorization": f"Bearer {server.token}"}).status_code == 200
    assert httpx.get(url).json()["output"] == "Hello, shared!", "shared: readable by anyone with the URL"

    example = httpx.post(f"{server.url}/v1/models/alice/hello/examples", json={"prediction_id": prediction.id},
                         headers={"Authorization": f"Bearer {server.token}"})
    assert example.status_code == 201
    model = client.models.get("alice/hello")
    assert model.default_example.id == prediction.id
    assert model.run_count >= 1 and model.cover_image_url is None, "hello's outputs are text: no cover"
    examples = httpx.get(f"{server.url}/v1/models/alice/hello/examples", headers={"Authorization": f"Bearer {server.token}"}).json()
    assert [e["id"] for e in examples["results"]] == [prediction.id]

    assert [h.sku for h in client.hardware.list()] == ["cpu"]
    assert client.accounts.current().username == "alice"

    doomed = client.predictions.create(version=server.versions["image"], input={"image": "data:image/png;base64," + EXAMPLE_PNG})
    doomed.wait()
    file_url = doomed.output
    assert httpx.get(file_url).status_code == 200
    assert httpx.delete(f"{server.url}/v1/predictions/{doomed.id}", headers={"Authorization": f"Bearer {server.token}"}).status_code == 204
    assert httpx.get(f"{server.url}/v1/predictions/{doomed.id}", headers={"Authorization": f"Bearer {server.token}"}).status_code == 404
    assert httpx.get(file_url).status_code == 404, "its files are gone too"


def test_api_predictions_lose_their_data_after_the_retention_time():
    short = Server("--data-retention", "1", samples=("hello",))
    try:
        client = short.client()
        prediction = client.predictions.create(version=short.versions["hello"], input={"text": "ephemeral"})
        prediction.wait()
        assert prediction.output == "Hello, ephemeral!"
        url = f"{short.url}/v1/predictions/{prediction.id}"
        headers = {"Authorization": f"Bearer {short.token}"}
        seen = httpx.get(url, headers=headers).json()
        assert seen["data_removed"] is False
        deadline = time.time() + 20
        while not seen["data_removed"] and time.time() < deadline:
            time.sleep(0.5)
            seen = httpx.get(url, headers=headers).json()
        assert seen["data_removed"] is True
        assert seen["output"] is None and seen["input"] is None and seen["logs"] == ""
        assert seen["status"] == "succeeded", "the object stays"
    finally:
        short.stop()


def test_rate_limits_answer_429_with_retry_after():
    limited = Server("--rate-limit-creates", "3", "--rate-limit-requests", "50", samples=("hello",))
    try:
        headers = {"Authorization": f"Bearer {limited.token}"}
        body = {"version": limited.versions["hello"], "input": {"text": "x"}}
        answers = [httpx.post(f"{limited.url}/v1/predictions", json=body, headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        assert answers[0].headers["ratelimit-remaining"] == "2"
        assert int(answers[3].headers["retry-after"]) >= 1
        assert "throttled" in answers[3].json()["detail"]
        other = httpx.get(f"{limited.url}/v1/predictions", headers=headers)
        assert other.status_code == 200, "other requests have their own budget"
        with pytest.raises(replicate.exceptions.ReplicateError) as raised:
            limited.client().predictions.create(version=limited.versions["hello"], input={"text": "y"})
        assert raised.value.status == 429
    finally:
        limited.stop()


EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)


def test_deployments_pin_a_version_and_keep_instances_warm():
    deployed = Server("--idle-timeout", "1", samples=("hello",))
    try:
        client = deployed.client()
        deployment = client.deployments.create(name="greeter", model="alice/hello", version=deployed.versions["hello"],
                                               hardware="cpu", min_instances=1, max_instances=2)
        assert deployment.current_release.configuration.min_instances == 1
        assert deployment.current_release.version == deployed.versions["hello"]
        deadline = time.time() + 60
        while deployed.instances() == 0 and time.time() < deadline:
            time.sleep(0.2)
        assert deployed.instances() >= 1, "min_instances keeps one warm before any prediction:\n" + deployed.log()
        time.sleep(3)
        assert deployed.instances() >= 1, "and the idle timeout does not stop it:\n" + deployed.log()

        prediction = client.deployments.get("alice/greeter").predictions.create(input={"text": "deployment"})
        prediction.wait()
        assert prediction.output == "Hello, deployment!"
        assert prediction.version == deployed.versions["hello"]
        assert [d.name for d in client.deployments.list().results] == ["greeter"]
        updated = client.deployments.update("alice", "greeter", min_instances=0)
        assert updated.current_release.number == 2
        client.deployments.delete("alice", "greeter")
        with pytest.raises(replicate.exceptions.ReplicateError):
            client.deployments.get("alice/greeter")
    finally:
        deployed.stop()


def test_safety_checker_and_cancel_after(server, tmp_path):
    import json
    import subprocess

    from conftest import LATHE

    (tmp_path / "lathe.yaml").write_text(
        "predict: predict.py:Predictor\nsafety_checker: safety.py:check\ninputs:\n  text: {type: string}\noutput: {type: string}\n")
    (tmp_path / "predict.py").write_text("class Predictor:\n    def predict(self, text: str) -> str:\n        return text\n")
    (tmp_path / "safety.py").write_text("def check(output):\n    return 'forbidden' not in output\n")
    pushed = subprocess.run([LATHE, "push", str(tmp_path), "alice/checked", "--json"], env=server.env, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    version = json.loads(pushed.stdout)["version"]
    client = server.client()
    assert client.run(f"alice/checked:{version}", input={"text": "fine words"}) == "fine words"
    flagged = client.predictions.create(version=version, input={"text": "forbidden words"})
    flagged.wait()
    assert flagged.status == "failed" and "safety checker" in flagged.error
    # The Python client has no parameter for it, so the API callers' switch goes in the body directly.
    skipped = httpx.post(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {server.token}", "Prefer": "wait"},
                         json={"version": version, "input": {"text": "forbidden words"}, "disable_safety_checker": True}).json()
    assert skipped["status"] == "succeeded" and skipped["output"] == "forbidden words"

    headers = {"Authorization": f"Bearer {server.token}", "Cancel-After": "5s"}
    started = time.time()
    answer = httpx.post(f"{server.url}/v1/predictions", headers=headers,
                        json={"version": server.versions["streamer"], "input": {"max_words": 500, "delay": 0.1}})
    assert answer.status_code == 201
    prediction = client.predictions.get(answer.json()["id"])
    prediction.wait()
    assert prediction.status == "canceled"
    assert 4.5 < time.time() - started < 15
    bad = httpx.post(f"{server.url}/v1/predictions", headers=dict(headers, **{"Cancel-After": "1s"}),
                     json={"version": server.versions["hello"], "input": {"text": "x"}})
    assert bad.status_code == 400


def test_http_url_inputs_are_fetched_from_another_host(server):
    """A file input given as an http(s) URL of another server (here a second loopback server) is
    fetched by the registry, not by the sandboxed model, which has no network."""
    import functools
    import http.server
    import os
    import threading

    from conftest import ROOT

    folder = os.path.join(ROOT, "samples", "image")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.2:{other.server_address[1]}/example.png"
        prediction = server.client().predictions.create(version=server.versions["image"], input={"image": url, "effect": "invert"})
        prediction.wait()
        assert prediction.status == "succeeded", prediction.error
        assert "invert" in prediction.logs
        missing = server.client().predictions.create(version=server.versions["image"], input={"image": url.replace("example", "absent")})
        missing.wait()
        assert missing.status == "failed" and "404" in (missing.error or "")
    finally:
        other.shutdown()


def test_files_over_100_mb_are_refused_with_413(server):
    content = (b"--x\r\nContent-Disposition: form-data; name=\"content\"; filename=\"big.bin\"\r\n\r\n"
               + b"\0" * (101 << 20) + b"\r\n--x--\r\n")
    answer = httpx.post(f"{server.url}/v1/files", content=content, timeout=120,
                        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "multipart/form-data; boundary=x"})
    assert answer.status_code == 413
    assert "100 MB" in answer.json()["detail"]
    listed = httpx.get(f"{server.url}/v1/files", headers={"Authorization": f"Bearer {server.token}"}).json()
    assert all(item["name"] != "big.bin" for item in listed["results"])


def test_operator_max_timeout_caps_a_models_timeout(tmp_path):
    import json
    import subprocess

    from conftest import LATHE

    capped = Server("--max-timeout", "2", samples=())
    try:
        (tmp_path / "lathe.yaml").write_text(
            "predict: predict.py:Predictor\ntimeout: 1h\ninputs:\n  seconds: {type: number}\noutput: {type: string}\n")
        (tmp_path / "predict.py").write_text(
            "import time\nclass Predictor:\n    def predict(self, seconds: float) -> str:\n        time.sleep(seconds)\n        return 'done'\n")
        pushed = subprocess.run([LATHE, "push", str(tmp_path), "alice/sleeper", "--json"], env=capped.env, capture_output=True, text=True)
        assert pushed.returncode == 0, pushed.stderr
        version = json.loads(pushed.stdout)["version"]
        started = time.time()
        prediction = capped.client().predictions.create(version=version, input={"seconds": 60})
        prediction.wait()
        assert prediction.status == "failed" and prediction.error == "Prediction timed out"
        assert time.time() - started < 30
        assert capped.client().run(f"alice/sleeper:{version}", input={"seconds": 0}) == "done"
    finally:
        capped.stop()


def test_secret_inputs_are_redacted_once_the_prediction_has_run(server, tmp_path):
    import json
    import subprocess

    from conftest import LATHE

    (tmp_path / "lathe.yaml").write_text(
        "predict: predict.py:Predictor\ninputs:\n  key: {type: secret}\n  text: {type: string, default: hi}\noutput: {type: string}\n")
    (tmp_path / "predict.py").write_text(
        "class Predictor:\n"
        "    def predict(self, key, text: str) -> str:\n"
        "        value = key.get_secret_value() if hasattr(key, 'get_secret_value') else key\n"
        "        return '%s:%d' % (text, len(value))\n")
    pushed = subprocess.run([LATHE, "push", str(tmp_path), "alice/secretive", "--json"], env=server.env, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    version = json.loads(pushed.stdout)["version"]
    prediction = server.client().predictions.create(version=version, input={"key": "s3cr3t-value", "text": "len"})
    prediction.wait()
    assert prediction.output == "len:12", "the model got the secret"
    assert prediction.input == {"key": "**********", "text": "len"}
    stored = httpx.get(f"{server.url}/v1/predictions/{prediction.id}", headers={"Authorization": f"Bearer {server.token}"}).json()
    assert "s3cr3t" not in json.dumps(stored)
