"""The official `replicate` Python client (PyPI) against a Lathe registry."""
import base64
import os
import time

import replicate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_run_with_version_and_with_model_name(server):
    version = server["versions"]["hello"]
    assert replicate.run(f"alice/hello:{version}", input={"text": "world"}) == "Hello, world!"
    assert replicate.run("alice/hello", input={"text": "Ada"}) == "Hello, Ada!"


def test_models_and_versions(server):
    model = replicate.models.get("alice/hello")
    assert (model.owner, model.name, model.visibility) == ("alice", "hello", "private")
    assert model.latest_version.id == server["versions"]["hello"]
    versions = list(model.versions.list())
    assert [v.id for v in versions] == [server["versions"]["hello"]]
    version = model.versions.get(server["versions"]["hello"])
    assert version.openapi_schema["components"]["schemas"]["Input"]["required"] == ["text"]


def test_predictions_create_get_list(server):
    prediction = replicate.predictions.create(version=server["versions"]["classifier"],
                                              input={"text": "The staff were friendly and the room was comfortable"})
    assert prediction.status in ("starting", "processing", "succeeded")
    prediction.wait()
    assert prediction.status == "succeeded", prediction.error
    assert prediction.output["label"] == "positive"
    assert prediction.metrics["predict_time"] >= 0
    again = replicate.predictions.get(prediction.id)
    assert again.output == prediction.output
    assert again.model == "alice/classifier" and again.version == server["versions"]["classifier"]
    listed = [p.id for p in replicate.predictions.list().results]
    assert prediction.id in listed


def test_invalid_input_is_rejected_per_field(server):
    try:
        replicate.predictions.create(version=server["versions"]["hello"], input={"txt": "x"})
    except replicate.exceptions.ReplicateError as error:
        assert error.status == 422
        assert "text" in str(error.detail)
    else:
        raise AssertionError("expected a 422")


def test_cancel(server):
    prediction = replicate.predictions.create(version=server["versions"]["streamer"],
                                              input={"prompt": "the river", "max_words": 200, "delay": 0.2})
    deadline = time.time() + 60
    while prediction.status == "starting" and time.time() < deadline:
        time.sleep(0.1)
        prediction.reload()
    prediction.cancel()
    prediction.reload()
    assert prediction.status == "canceled"


def test_file_input_as_data_uri_and_file_output(server):
    with open(os.path.join(ROOT, "samples", "image", "example.png"), "rb") as handle:
        data = "data:image/png;base64," + base64.b64encode(handle.read()).decode()
    output = replicate.run(f"alice/image:{server['versions']['image']}", input={"image": data, "effect": "invert"})
    png = output.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_stream_yields_words_as_they_are_made(server):
    started = time.time()
    arrivals, words = [], []
    for event in replicate.stream(f"alice/streamer:{server['versions']['streamer']}",
                                  input={"prompt": "the boats", "max_words": 12, "seed": 3, "delay": 0.15}):
        if event.event.value != "output":
            continue
        words.append(str(event))
        arrivals.append(time.time() - started)
    assert len(words) == 12
    assert arrivals[-1] - arrivals[0] > 0.8, f"items arrived over time, not at once: {arrivals}"
    final = replicate.predictions.list().results[0]
    assert "".join(words) == "".join(final.output)


def test_file_upload_input_and_file_output(server):
    with open(os.path.join(ROOT, "samples", "image", "example.png"), "rb") as handle:
        uploaded = replicate.files.create(handle)
    assert uploaded.size == os.path.getsize(os.path.join(ROOT, "samples", "image", "example.png"))
    assert replicate.files.get(uploaded.id).checksums["sha256"] == uploaded.checksums["sha256"]
    with open(os.path.join(ROOT, "samples", "image", "example.png"), "rb") as handle:
        output = replicate.run(f"alice/image:{server['versions']['image']}",
                               input={"image": handle, "effect": "sepia", "caption": "uploaded"})
    png = output.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[20:24], "big") == 48 + 24, "the caption band was added"
    replicate.files.delete(uploaded.id)


def test_every_sample_runs(server):
    versions = server["versions"]
    assert replicate.run(f"alice/hello:{versions['hello']}", input={"text": "x"}) == "Hello, x!"
    assert replicate.run(f"alice/classifier:{versions['classifier']}", input={"text": "rude staff and cold food"})["label"] == "negative"
    words = replicate.run(f"alice/streamer:{versions['streamer']}", input={"max_words": 5, "delay": 0})
    assert len(list(words)) == 5


def test_webhooks_are_signed_and_filtered(server):
    import json

    from conftest import WebhookReceiver

    receiver = WebhookReceiver()
    received = receiver.received
    try:
        url = f"{receiver.url}/hook?job=42"
        prediction = replicate.predictions.create(version=server["versions"]["streamer"],
                                                  input={"max_words": 6, "delay": 0.3},
                                                  webhook=url, webhook_events_filter=["start", "output", "completed"])
        prediction.wait()
        deadline = time.time() + 20
        while not any(json.loads(body)["status"] == "succeeded" for _, body in received) and time.time() < deadline:
            time.sleep(0.1)
        secret = replicate.webhooks.default.secret()
        assert secret.key.startswith("whsec_")
        statuses = []
        for headers, body in received:
            replicate.webhooks.validate(headers=headers, body=body, secret=secret)  # raises if the signature is wrong
            statuses.append(json.loads(body)["status"])
        assert statuses[0] == "processing", statuses
        assert statuses[-1] == "succeeded"
        assert 2 < len(received) <= 2 + 6, "start, some throttled outputs, completed"
        assert not any("logs" in headers.get("webhook-id", "") for headers, _ in received), "logs were not asked for"
        try:
            replicate.webhooks.validate(headers=received[-1][0], body=received[-1][1] + " ", secret=secret)
        except Exception as error:  # the client's InvalidSignatureError
            assert "signature" in type(error).__name__.lower() or "signature" in str(error).lower()
        else:
            raise AssertionError("a tampered body must not validate")
    finally:
        receiver.__exit__()


def test_completed_webhook_is_retried_until_delivered(server):
    import http.server
    import json
    import threading

    attempts = []

    class FlakyReceiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            attempts.append((self.headers["webhook-id"], json.loads(body)["status"]))
            # The first two deliveries fail; the registry must try the completed event again.
            self.send_response(500 if len(attempts) <= 2 else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.2", 0), FlakyReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        prediction = replicate.predictions.create(version=server["versions"]["hello"], input={"text": "retry"},
                                                  webhook=f"http://127.0.0.2:{receiver.server_address[1]}/hook",
                                                  webhook_events_filter=["completed"])
        prediction.wait()
        deadline = time.time() + 30
        while len(attempts) < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert len(attempts) == 3, attempts
        assert {status for _, status in attempts} == {"succeeded"}
        assert len({message for message, _ in attempts}) == 1, "a retry keeps its webhook-id"
    finally:
        receiver.shutdown()


def test_a_streamed_prediction_canceled_halfway_keeps_what_it_emitted(server):
    import httpx
    prediction = replicate.predictions.create(version=server["versions"]["streamer"], input={"max_words": 60, "delay": 0.2})
    deadline = time.time() + 60
    while len(prediction.output or []) < 3 and time.time() < deadline:
        time.sleep(0.2)
        prediction.reload()
    prediction.cancel()
    prediction.wait()
    assert prediction.status == "canceled" and 3 <= len(prediction.output) < 60, (prediction.status, prediction.output)
    page = httpx.get(f"{server.url}/p/{prediction.id}", headers={"Authorization": f"Bearer {server.token}"}).text
    assert "".join(prediction.output).strip().split()[0] in page
