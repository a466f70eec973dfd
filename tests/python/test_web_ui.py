"""The web UI in a real browser: Playwright driving Debian's headless chromium against `lathe serve`.

Screenshots of the key pages go to test-artifacts/screenshots/ (the README names the folder)."""
import json
import os
import re
import subprocess
import time

import httpx
import pytest

from conftest import LATHE, ROOT, Server

import playwright.sync_api as playwright_api  # noqa: E402
expect = playwright_api.expect
SCREENSHOTS = os.path.join(ROOT, "test-artifacts", "screenshots")
CHROMIUM = os.environ.get("LATHE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery"
# Messages of alert() dialogs any page opened: a payload that ran.
ALERTS = []


def on_dialog(dialog):
    if dialog.type == "confirm":
        dialog.accept()  # "Delete …?" confirmations
    else:
        ALERTS.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def web():
    running = Server("--idle-timeout", "60", samples=())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def sign_up(browser, web, username):
    """A fresh browser context signed up as `username`; alerts are recorded in ALERTS, confirmations accepted."""
    context = browser.new_context(base_url=web.url)
    context.on("dialog", on_dialog)
    page = context.new_page()
    page.goto("/signup")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/account")
    return context, page


def create_token(page, label="ci"):
    page.goto("/account")
    page.get_by_label("Label").fill(label)
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").input_value()
    assert token.startswith("lat_")
    return token


def push(web, token, folder, target):
    env = dict(os.environ, LATHE_HOME=os.path.join(web.scratch, "home-" + target.replace("/", "-")), LATHE_REGISTRY=web.url, LATHE_TOKEN=token)
    pushed = subprocess.run([LATHE, "push", folder, target, "--json"], env=env, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    return json.loads(pushed.stdout)["version"]


def wait_image_loaded(page, image):
    """Waits until an image has loaded and decoded. The page's load event does not wait for a
    lazy cover or an output added by script; a broken image stays at naturalWidth 0 and fails."""
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=image.element_handle(), timeout=15_000)


def test_sign_up_publish_run_share_delete(browser, web):
    context, page = sign_up(browser, web, "carol")
    shot(page, "01-account")
    token = create_token(page)
    # The token works with the API and is shown only once.
    assert httpx.get(f"{web.url}/v1/account", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "carol"
    page.goto("/account")
    assert token not in page.content()

    push(web, token, os.path.join(ROOT, "samples", "image"), "carol/image")
    page.goto("/carol/image")
    assert page.locator("h1").inner_text() == "carol / image"
    # The first push brought the project's README.md along, rendered as Markdown.
    assert page.locator(".readme h2", has_text="image").count() == 1
    assert page.locator(".readme code", has_text="grayscale").count() == 1
    # The generated form: a file picker honouring accept, a select of choices, a slider for a
    # small number range, a text field with the spec's max_length, help text from descriptions.
    picker = page.get_by_label("image")
    assert picker.get_attribute("type") == "file" and picker.get_attribute("accept") == "image/*"
    assert picker.get_attribute("required") is not None
    assert page.get_by_label("effect").evaluate("e => e.tagName") == "SELECT"
    strength = page.get_by_label("strength")
    assert (strength.get_attribute("type"), strength.get_attribute("min"), strength.get_attribute("max")) == ("range", "0", "1")
    assert page.get_by_label("caption").get_attribute("maxlength") == "200"
    assert page.get_by_text("Which filter to apply").is_visible()
    shot(page, "02-model-page")

    # Client-side checks mirror the schema: the required image is missing.
    page.get_by_role("button", name="Run").click()
    assert page.locator("#input-image-error").inner_text() != ""
    assert page.url.endswith("/carol/image")

    page.get_by_label("caption").fill("a caption")
    page.get_by_label("effect").select_option("invert")
    strength.fill("0.5")
    picker.set_input_files(os.path.join(ROOT, "samples", "image", "example.png"))
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
    prediction_url = page.url
    image = page.locator(".output img")
    image.wait_for(timeout=90_000)
    assert page.locator("#status").inner_text() == "succeeded"
    wait_image_loaded(page, image)
    assert "invert at 0.50" in page.locator("#logs").inner_text()
    shot(page, "03-prediction")

    # The dashboard lists it with its source.
    page.goto("/dashboard")
    row = page.locator("table.predictions tbody tr").first
    assert "carol/image" in row.inner_text() and "succeeded" in row.inner_text() and "web" in row.inner_text()
    shot(page, "04-dashboard")

    # Unshared, it is a 404 to a signed-out visitor; shared, the link works signed out.
    anonymous = browser.new_context(base_url=web.url)
    visitor = anonymous.new_page()
    assert visitor.goto(prediction_url).status == 404
    page.goto(prediction_url)
    page.get_by_role("button", name="Share").click()
    shared_link = page.locator("#share-link").get_attribute("href")
    assert visitor.goto(shared_link).status == 200
    visitor.locator(".output img").wait_for()
    assert visitor.get_by_role("button", name="Delete").count() == 0
    shot(visitor, "05-shared-signed-out")

    # Delete: the page and its output file are gone.
    output_file = page.locator(".output img").get_attribute("src")
    served = httpx.get(web.url + output_file)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    # Output files come from the registry's origin but may never act as pages of it.
    assert "sandbox" in served.headers["content-security-policy"] and served.headers["x-content-type-options"] == "nosniff"
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/dashboard")
    assert visitor.goto(shared_link).status == 404
    assert httpx.get(web.url + output_file).status_code == 404
    anonymous.close()
    context.close()


def test_streamed_text_appears_incrementally(browser, web):
    context, page = sign_up(browser, web, "erin")
    push(web, create_token(page), os.path.join(ROOT, "samples", "streamer"), "erin/streamer")
    page.goto("/erin/streamer")
    page.get_by_label("max words").fill("12")
    page.get_by_label("delay").fill("0.25")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
    seen = []
    deadline = time.time() + 90
    while time.time() < deadline:
        status = page.locator("#status").inner_text()
        text = page.locator("#output-text").inner_text() if page.locator("#output-text").count() else ""
        if status != "succeeded" and text and (not seen or seen[-1] != text):
            seen.append(text)
        if status == "succeeded":
            break
        time.sleep(0.05)
    assert len(seen) >= 3, f"expected the text to grow while running, saw {seen}"
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:]))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=30_000)
    final = page.locator("#output-text").inner_text()
    assert final.startswith(seen[-1]) and len(final) >= len(seen[-1]) and len(final.split()) >= 8
    shot(page, "06-streamed-text")
    context.close()


def test_private_models_and_predictions_are_404_to_others(browser, web):
    owner, page = sign_up(browser, web, "frank")
    page.goto("/new")
    page.get_by_label("Name").fill("secret-model")
    page.get_by_label("Description").fill("Nobody else may see this")
    page.get_by_label("Private: only its owner").check()
    page.get_by_role("button", name="Create model").click()
    page.wait_for_url("**/frank/secret-model")
    assert "private" in page.locator(".badges").inner_text()
    shot(page, "07-new-private-model")

    other, stranger = sign_up(browser, web, "grace")
    response = stranger.goto("/frank/secret-model")
    assert response.status == 404
    assert "Nobody else may see this" not in stranger.content()
    assert stranger.goto("/frank/secret-model/edit").status == 404
    stranger.goto("/?q=secret")
    assert "secret-model" not in stranger.content()
    owner.close()
    other.close()


def test_examples_and_explore_cover(browser, web):
    context, page = sign_up(browser, web, "heidi")
    token = create_token(page)
    push(web, token, os.path.join(ROOT, "samples", "image"), "heidi/filters")
    page.goto("/heidi/filters/edit")
    page.get_by_label("Public", exact=True).check()
    page.get_by_label("Description").fill("Photo filters for everyone")
    page.get_by_label("Readme (Markdown)").fill("# Filters\n\nRun **any** filter. See [the docs](https://example.com/docs).")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/heidi/filters")
    assert page.locator(".readme strong").inner_text() == "any"
    assert page.locator(".readme a").get_attribute("href") == "https://example.com/docs"
    page.get_by_label("image").set_input_files(os.path.join(ROOT, "samples", "image", "example.png"))
    page.get_by_role("button", name="Run").click()
    page.locator(".output img").wait_for(timeout=90_000)
    page.get_by_role("button", name="Add to examples").click()
    page.wait_for_url("**/heidi/filters")
    assert page.locator(".examples img").count() == 1
    # The API's model object carries the same cover and the run count.
    model = httpx.get(f"{web.url}/v1/models/heidi/filters", headers={"Authorization": f"Bearer {token}"}).json()
    assert model["run_count"] == 1 and model["cover_image_url"].endswith(".png")
    assert httpx.get(model["cover_image_url"]).headers["content-type"] == "image/png"

    anonymous = browser.new_context(base_url=web.url)
    visitor = anonymous.new_page()
    visitor.goto("/?q=photo")
    card = visitor.locator(".card", has_text="heidi/filters")
    assert card.count() == 1
    wait_image_loaded(visitor, card.locator("img"))
    assert re.search(r"\b1 run\b", card.inner_text())
    shot(visitor, "08-explore")
    visitor.goto("/?q=no-such-thing")
    assert visitor.locator(".card").count() == 0
    anonymous.close()
    context.close()


def test_organizations_and_acting_as(browser, web):
    context, page = sign_up(browser, web, "ivan")
    page.get_by_label("New organization").fill("acme-lab")
    page.get_by_role("button", name="Create organization").click()
    page.wait_for_url("**/organizations/acme-lab")
    _, other = sign_up(browser, web, "judy")
    page.get_by_label("Add user").fill("judy")
    page.get_by_role("button", name="Add member").click()
    assert "judy" in page.locator("table").inner_text()
    shot(page, "09-organization")
    page.goto("/account")
    page.get_by_label("Act as").select_option("acme-lab")
    page.get_by_role("button", name="Switch").click()
    page.wait_for_url("**/dashboard")
    assert "Predictions of acme-lab" in page.locator("h1").inner_text()
    # Models created while acting as the organization belong to it; its members see them.
    page.goto("/new")
    assert page.get_by_label("Owner", exact=True).input_value() == "acme-lab"
    page.get_by_label("Name").fill("shared-tool")
    page.get_by_label("Private: only its owner").check()
    page.get_by_role("button", name="Create model").click()
    page.wait_for_url("**/acme-lab/shared-tool")
    assert other.goto("/acme-lab/shared-tool").status == 200
    page.goto("/organizations/acme-lab")
    page.get_by_role("button", name="Remove judy").click()
    assert other.goto("/acme-lab/shared-tool").status == 404
    context.close()


def test_payloads_in_model_data_render_inert(browser, web):
    context, page = sign_up(browser, web, "mallory")
    token = create_token(page)
    folder = os.path.join(web.scratch, "xss-model")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "lathe.yaml"), "w") as spec:
        spec.write(
            "description: '<script>alert(\"description\")</script><img src=x onerror=alert(1)>'\n"
            "predict: predict.py:Predictor\n"
            "inputs:\n"
            "  text: {type: string, default: '\"><script>alert(\"default\")</script>', description: '<b onmouseover=alert(2)>help</b>'}\n"
            "  link: {type: string, default: 'javascript:alert(3)', max_length: 100}\n"
            "output: {type: string}\n")
    with open(os.path.join(folder, "predict.py"), "w") as code:
        code.write("class Predictor:\n"
                   "    def predict(self, text: str, link: str) -> str:\n"
                   "        print('<script>alert(\"logs\")</script>')\n"
                   "        return text + '<img src=x onerror=alert(4)><a href=\"javascript:alert(5)\">x</a>' + link\n")
    push(web, token, folder, "mallory/xss")
    page.goto("/mallory/xss/edit")
    page.get_by_label("Readme (Markdown)").fill(
        "<script>alert('readme')</script>\n\n[click](javascript:alert(6)) [data](data:text/html,<script>alert(7)</script>)\n\n"
        "![img](javascript:alert(8)) [quote](https://example.com/\"onmouseover=\"alert(9))")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/mallory/xss")
    ALERTS.clear()
    page.reload()
    # Payloads show as text; no element they describe exists; no javascript: or data: links.
    assert "<script>alert(\"description\")</script>" in page.locator(".lead").inner_text()
    assert page.locator("main script, main img[src='x'], [onmouseover], [onerror]").count() == 0
    assert page.locator("a[href^='javascript'], a[href^='data'], img[src^='javascript']").count() == 0
    assert page.get_by_label("text").input_value() == '"><script>alert("default")</script>'
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=90_000)
    assert "<img src=x onerror=alert(4)>" in page.locator("#output").inner_text()
    assert "<script>" in page.locator("#logs").inner_text()
    assert page.locator("main script, main img[src='x'], [onerror]").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    shot(page, "10-payloads-inert")
    assert ALERTS == []
    context.close()


README_XSS = [
    "<script>alert('r1')</script>", "<img src=x onerror=alert('r2')>", "[x](javascript:alert('r3'))", "[x](JaVaScRiPt:alert('r4'))",
    "[x](data:text/html,<script>alert('r5')</script>)", "![p](x/[)](/a/onerror=alert('r6')//)", "![p](x/[)](/a/id=clobber//)",
    "[a](/x \"t\\\" id=clobber name=clobber\")", "<a id=clobber name=clobber href=#>x</a>", "<details open ontoggle=alert('r7')>",
    "[<img src=x onerror=alert('r8')>](https://a.example)", "![a\" onerror=\"alert('r9')](https://a.example/i.png)",
    "<svg><script>alert('r10')</script></svg>", "<iframe src=javascript:alert('r11')>", "<form id=clobber><input name=clobber>",
    "[x](https://a.example/\"onmouseover=\"alert('r12'))", "<style>*{display:none}</style>", "*[x](javascript:alert('r13'))*",
]


def test_readme_xss_corpus_leaves_no_handler_id_or_name_in_the_dom(browser, web):
    """Issue 19: the readme goes through cmark-gfm's safe mode; checked in the browser's DOM."""
    context, page = sign_up(browser, web, "rhea")
    token = create_token(page)
    push(web, token, os.path.join(ROOT, "samples", "hello"), "rhea/readme")
    page.goto("/rhea/readme/edit")
    page.get_by_label("Readme (Markdown)").fill("\n\n".join(README_XSS) + "\n\n# Still here\n\n**bold** [ok](https://example.com/ok)")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/rhea/readme")
    ALERTS.clear()
    page.reload()
    found = page.evaluate("""() => Array.from(document.querySelectorAll('.readme > :not(#readme-heading), .readme > :not(#readme-heading) *'))
        .flatMap(element => Array.from(element.attributes).map(attribute => element.tagName + '[' + attribute.name + ']'))
        .filter(name => /\\[(on[a-z]+|id|name|style)\\]$/.test(name))""")
    assert found == [], found
    assert page.locator(".readme script, .readme iframe, .readme svg, .readme form, .readme style, .readme details").count() == 0
    assert page.locator(".readme a[href^='javascript'], .readme a[href^='data'], .readme img[src^='javascript']").count() == 0
    assert page.evaluate("() => typeof window.clobber") == "undefined", "no element named by the readme reaches window"
    assert page.locator(".readme h2", has_text="Still here").count() == 1 and page.locator(".readme strong").inner_text() == "bold"
    assert page.locator(".readme a", has_text="ok").get_attribute("href") == "https://example.com/ok"
    shot(page, "11-readme-corpus")
    assert ALERTS == []
    context.close()


def test_csrf_and_cookie_flags(browser, web):
    context, page = sign_up(browser, web, "oscar")
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    session = cookies["lathe_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and not session["secure"]
    assert cookies["lathe_csrf"]["httpOnly"]
    jar = {"lathe_session": session["value"], "lathe_csrf": cookies["lathe_csrf"]["value"]}
    with httpx.Client(base_url=web.url, cookies=jar) as client:
        assert client.get("/account").status_code == 200
        # A cross-site post carries the cookies (a form on another site) but not the token.
        refused = client.post("/account/tokens", data={"label": "stolen"})
        assert refused.status_code == 403 and "security token" in refused.text
        forged = client.post("/account/tokens", data={"label": "stolen", "_csrf": cookies["lathe_csrf"]["value"]},
                             headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403
        # Signed in, the token is bound to the session: the cookie's value is not enough, the page's is.
        assert client.post("/account/tokens", data={"label": "planted", "_csrf": cookies["lathe_csrf"]["value"]}).status_code == 403
        token = re.search(r'name="_csrf" value="([0-9a-f]+)"', client.get("/account").text).group(1)
        assert client.post("/account/tokens", data={"label": "ok", "_csrf": token}).status_code == 200
        # Behind TLS (a proxy saying so), the cookies are Secure.
        signin = httpx.get(web.url + "/signin", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in signin.headers["set-cookie"] and "HttpOnly" in signin.headers["set-cookie"]
        assert "SameSite=Lax" in signin.headers["set-cookie"]
    page.goto("/account")
    assert "stolen" not in page.content()
    context.close()


def test_keyboard_only_and_labels(browser, web):
    context, page = sign_up(browser, web, "kate")
    push(web, create_token(page), os.path.join(ROOT, "samples", "hello"), "kate/hello")
    # Every form control on the key pages has a label.
    for path in ["/", "/account", "/kate/hello", "/dashboard", "/new", "/kate/hello/edit"]:
        page.goto(path)
        unlabeled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id)""")
        assert unlabeled == [], f"{path}: controls without labels: {unlabeled}"
    # Sign out and back in, then run the model with the keyboard alone.
    page.get_by_role("button", name="Sign out").click()
    page.goto("/signin?next=/kate/hello")

    def tab_to(element_id, most=8):
        for _ in range(most):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        pytest.fail(f"#{element_id} was not reached with Tab")

    # The skip link comes first and moves focus to the content; the form is next.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    tab_to("username")
    page.keyboard.type("kate")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/kate/hello")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    tab_to("input-text")
    page.keyboard.type("keyboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Run"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    assert "Hello, keyboard!" in page.locator("#output").inner_text()
    context.close()


def test_server_422_messages_beside_fields(browser, web):
    context, page = sign_up(browser, web, "lena")
    push(web, create_token(page), os.path.join(ROOT, "samples", "streamer"), "lena/streamer")
    page.goto("/lena/streamer")
    # Past the browser's checks (as a script or an old browser would be), the server's 422
    # messages come back beside the fields they are about, with the values sent kept.
    page.evaluate("""() => {
        const field = document.getElementById('input-max_words');
        field.removeAttribute('max'); field.type = 'text'; field.value = '9999';
        const seed = document.getElementById('input-seed'); seed.type = 'text'; seed.value = 'abc';
    }""")
    page.get_by_role("button", name="Run").click()
    page.wait_for_load_state()
    assert page.url.endswith("/lena/streamer/predictions")
    assert "500" in page.locator("#input-max_words-error").inner_text()
    assert "integer" in page.locator("#input-seed-error").inner_text()
    assert page.get_by_label("prompt").input_value() == "the river"
    shot(page, "11-server-422")
    context.close()


def test_sign_up_can_be_turned_off():
    closed = Server("--no-signup", samples=())
    try:
        assert httpx.get(closed.url + "/signup").status_code == 404
        assert httpx.post(closed.url + "/signup", data={"username": "x", "password": "long enough"}).status_code == 404
        signin = httpx.get(closed.url + "/signin")
        assert signin.status_code == 200 and "/signup" not in signin.text
    finally:
        closed.stop()


def test_cancel_filter_paginate_and_delete_model(browser, web):
    context, page = sign_up(browser, web, "mike")
    token = create_token(page)
    push(web, token, os.path.join(ROOT, "samples", "streamer"), "mike/slow")
    page.goto("/mike/slow")
    page.get_by_label("max words").fill("200")
    page.get_by_label("delay").fill("1")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
    expect(page.locator("#status")).to_have_text("processing", timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("canceled", timeout=20_000)
    canceled = page.url.rsplit("/", 1)[-1]

    # 21 more through the API (the dashboard shows 20 a page), then filter and page through.
    api = {"Authorization": f"Bearer {token}", "Prefer": "wait"}
    for n in range(21):
        created = httpx.post(f"{web.url}/v1/models/mike/slow/predictions", headers=api,
                             json={"input": {"max_words": 1, "delay": 0, "seed": n}}, timeout=60)
        assert created.status_code == 201
    page.goto("/dashboard")
    assert page.locator("table.predictions tbody tr").count() == 20
    page.get_by_role("link", name="Older predictions").click()
    assert page.locator("table.predictions tbody tr").count() == 2
    page.goto("/dashboard")
    page.get_by_label("Status").select_option("canceled")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.predictions tbody tr")
    assert rows.count() == 1 and canceled in rows.first.inner_text()
    page.get_by_label("Model", exact=True).fill("someone/else")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.predictions tbody tr").count() == 0

    page.goto("/mike/slow/edit")
    page.get_by_role("button", name="Delete mike/slow").click()
    page.wait_for_url("**/dashboard")
    assert page.goto("/mike/slow").status == 404
    context.close()


def test_sign_in_attempts_are_throttled(browser, web):
    context, page = sign_up(browser, web, "nina")
    context.close()
    # Failures past the third add a growing delay (up to 5 s each).
    with httpx.Client(base_url=web.url, timeout=60) as client:
        csrf = client.get("/signin").cookies["lathe_csrf"]
        statuses = [client.post("/signin", data={"username": "nina", "password": f"wrong-{n}", "_csrf": csrf}).status_code for n in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        refused = client.post("/signin", data={"username": "nina", "password": PASSWORD, "_csrf": csrf})
        assert refused.status_code == 429 and "Retry-After" in refused.headers and "Too many sign-in attempts" in refused.text


def test_web_predictions_are_kept_past_the_retention_time(browser):
    short = Server("--data-retention", "1", samples=())
    try:
        context, page = sign_up(browser, short, "olga")
        token = create_token(page)
        version = push(short, token, os.path.join(ROOT, "samples", "hello"), "olga/hello")
        page.goto("/olga/hello")
        page.get_by_label("text").fill("web")
        page.get_by_role("button", name="Run").click()
        page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
        expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
        api = httpx.post(f"{short.url}/v1/predictions", json={"version": version, "input": {"text": "api"}},
                         headers={"Authorization": f"Bearer {token}", "Prefer": "wait"}).json()
        assert api["output"] == "Hello, api!"
        time.sleep(7)  # the retention sweep runs every 5 s
        removed = httpx.get(f"{short.url}/v1/predictions/{api['id']}", headers={"Authorization": f"Bearer {token}"}).json()
        assert removed["data_removed"] and removed["output"] is None
        page.reload()
        assert "Hello, web!" in page.locator("#output").inner_text()
        context.close()
    finally:
        short.stop()


DETECTOR_SPEC = """name: dora/detector
python: "3.11"
predict: predict.py:Predictor
inputs:
  threshold: {type: number, description: Lowest score shown, default: 0.5, minimum: 0, maximum: 1}
output:
  type: array
  description: What was found
  items:
    type: object
    properties:
      label: {type: string, description: Class name}
      score: number
      box: {type: array, items: integer, description: "x, y, w, h"}
"""
DETECTOR_CODE = """class Predictor:
    def predict(self, threshold: float = 0.5) -> list:
        found = [{"label": "cat", "score": 0.91, "box": [12, 40, 96, 80]},
                 {"label": "dog", "score": 0.64, "box": [150, 22, 60, 110]},
                 {"label": "hat", "score": 0.2, "box": [0, 0, 5, 5]}]
        return [detection for detection in found if detection["score"] >= threshold]
"""


def test_readme_quick_start_walked_end_to_end_and_detections_shown_as_a_table(browser, web, tmp_path):
    # As the README's registry section shows: an operator creates a user with a password (the
    # server is running), who signs in on the web, makes a token, logs in, pushes and runs the
    # model from its form.
    created = subprocess.run([LATHE, "admin", "user", "create", "dora", "--password-stdin", "--data", web.data],
                             input=PASSWORD + "\n", capture_output=True, text=True, env=web.server_env)
    assert created.returncode == 0, created.stderr
    context = browser.new_context(base_url=web.url)
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not url.endswith("/signin"))
    token = create_token(page, "laptop")

    project = tmp_path / "detector"
    project.mkdir()
    (project / "lathe.yaml").write_text(DETECTOR_SPEC)
    (project / "predict.py").write_text(DETECTOR_CODE)
    env = dict(os.environ, LATHE_HOME=str(tmp_path / "home"))
    env.pop("LATHE_TOKEN", None), env.pop("LATHE_REGISTRY", None)
    login = subprocess.run([LATHE, "login", web.url, "--token-stdin"], input=token + "\n", capture_output=True, text=True, env=env)
    assert login.returncode == 0, login.stderr
    pushed = subprocess.run([LATHE, "push", str(project), "dora/detector"], capture_output=True, text=True, env=env)
    assert pushed.returncode == 0, pushed.stderr

    page.goto("/dora/detector")
    page.get_by_label("threshold").fill("0.5")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/p/[a-z2-7]{26}$"))
    table = page.locator(".output table.output-table")
    table.wait_for(timeout=90_000)
    assert page.locator("#status").inner_text() == "succeeded"
    assert table.locator("thead th").all_inner_texts() == ["box", "label", "score"]
    rows = [row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all()]
    assert rows == [["[12, 40, 96, 80]", "cat", "0.91"], ["[150, 22, 60, 110]", "dog", "0.64"]], rows
    shot(page, "06-detections-table")
    # A prediction that printed nothing says so instead of showing an empty box.
    assert page.locator("#logs").evaluate("e => getComputedStyle(e, '::before').content") == '"No logs"'
    assert page.locator("#logs").evaluate("e => e.getBoundingClientRect().height") > 0
    # The served schema nests as declared.
    version = httpx.get(f"{web.url}/v1/models/dora/detector", headers={"Authorization": f"Bearer {token}"}).json()["latest_version"]
    schema = version["openapi_schema"]["components"]["schemas"]["Output"]
    assert schema["items"]["properties"]["box"]["items"] == {"type": "integer"}, schema
    context.close()
