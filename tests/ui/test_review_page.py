"""`/review` on a phone (390x844) in headless Chromium, through a real gateway in front of a real webserver.

The deployment has one video rendered by the real `video_job`. An operator signs in, sees it
done in the list, plays it inline (the browser's range requests against the gateway), approves
it (the catalog shows it, a signed `render.approved` reaches a loopback receiver) and launches a
re-edit through GraphQL; a viewer sees no buttons, and a forged POST is refused with 403.
Screenshots are kept under `test-artifacts/review/`.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from autoedit_dagster.assets.catalog import build_catalog
from autoedit_dagster.gateway.tokens import mint_token
from autoedit_dagster.resources import LocalMediaStore
from autoedit_dagster.webhooks.delivery import deliver_due
from autoedit_dagster.webhooks.settings import WebhookSettings
from testsupport.servers import JWT_SECRET
from testsupport.webhook_receiver import WebhookReceiver, serve

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "review"
PHONE = {"width": 390, "height": 844}
HOOK_SECRET = "review-hook-secret-" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def receiver():
    receiver = WebhookReceiver(HOOK_SECRET.encode())
    server, url = serve(receiver)
    yield receiver, url
    server.shutdown()


@pytest.fixture(scope="module")
def gateway(deployment, redis_url, receiver):
    _, url = receiver
    hooks = {"AUTOEDIT_WEBHOOK_URLS": url, "AUTOEDIT_WEBHOOK_SECRET": HOOK_SECRET}
    server = deployment.servers.start_gateway(
        deployment.webserver.url, redis_url, rate_limit=1000, name="review-gateway", extra_env=hooks
    )
    deployment.servers.wait_gateway(server)
    return server


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll `expression` (the page's CSP forbids the eval `wait_for_function` relies on)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        time.sleep(0.1)


def sign_in(page, gateway_url: str, role: str, target: str) -> None:
    page.context.clear_cookies()
    token = mint_token(JWT_SECRET, role, subject=f"review-{role}", ttl=600)
    page.goto(f"{gateway_url}/login?next={target}")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway_url}{target}")


def test_review_on_a_phone(deployment, gateway, browser_context, receiver) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    store = LocalMediaStore(root=str(deployment.instance.storage))
    video_id = deployment.video_id
    page = browser_context.new_page()
    page.set_viewport_size(PHONE)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    started = time.monotonic()
    sign_in(page, gateway.url, "operator", "/review")
    row = page.locator("ul.videos li", has_text="ui-demo.mp4")
    assert "done" in row.locator(".status").inner_text()
    assert "kept" in row.inner_text()
    list_load_s = time.monotonic() - started
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    page.screenshot(path=ARTIFACTS / "list-phone.png", full_page=True)

    row.locator("a.name").click()
    page.wait_for_url(f"{gateway.url}/review/v/{video_id}")
    wait_until(page, "document.querySelector('#render').readyState >= 2")
    page.evaluate("document.querySelector('#render').play()")
    wait_until(page, "document.querySelector('#render').currentTime > 0.3")
    assert page.locator("img.timeline").evaluate("img => img.naturalWidth") > 0
    assert "audio_video_in_sync: passed" in page.locator("ul.checks").inner_text()
    page.screenshot(path=ARTIFACTS / "video-phone.png", full_page=True)
    # The player's requests are ranges, answered 206 with the part asked for.
    ranged = httpx.get(
        f"{gateway.url}/review/media/{video_id}/tate/final.mp4",
        headers={"Range": "bytes=0-99", "Cookie": f"autoedit_token={mint_token(JWT_SECRET, 'viewer', ttl=60)}"},
        trust_env=False,
    )
    assert ranged.status_code == 206 and len(ranged.content) == 100

    page.click("#approve")
    page.wait_for_url(f"{gateway.url}/review/v/{video_id}?profile=tate")
    assert "approved" in page.locator("text=approved").first.inner_text()
    catalog = build_catalog(store).filter(video_id=video_id)
    assert catalog["review"].to_list() == ["approved"] and catalog["reviewed_by"].to_list() == ["review-operator"]
    hooks, url = receiver
    settings = WebhookSettings.from_env({"AUTOEDIT_WEBHOOK_URLS": url, "AUTOEDIT_WEBHOOK_SECRET": HOOK_SECRET})
    assert [a.outcome for a in deliver_due(store, settings)] == ["delivered"]  # what the daemon's sensor does
    (approved,) = hooks.accepted.values()
    assert approved["type"] == "render.approved" and approved["data"]["video_id"] == video_id

    page.select_option("select[name=cut_on]", "loudness")
    page.click("#reedit")
    page.wait_for_url(f"{gateway.url}/review/v/{video_id}?profile=tate")
    with deployment.instance.open() as instance:
        import dagster as dg

        (run,) = instance.get_runs(dg.RunsFilter(tags={"autoedit/requested_by": "review-operator"}))
    assert run.job_name == "video_job" and run.tags["dagster/partition"] == video_id
    assert run.run_config["ops"]["speech_segments"]["config"]["detector"] == "loudness"

    # A viewer: the same page without a button, and the endpoint refuses a POST from the page itself.
    sign_in(page, gateway.url, "viewer", f"/review/v/{video_id}")
    assert page.locator("#approve, #reject, #reedit").count() == 0
    page.screenshot(path=ARTIFACTS / "video-phone-viewer.png", full_page=True)
    status = page.evaluate(
        """id => fetch('/review/v/' + id + '/decision', {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'decision=approved&profile=tate'}).then(r => r.status)""",
        video_id,
    )
    assert status == 403
    # An operator's cookie carried by another site's form: refused before anything is recorded.
    operator_cookie = f"autoedit_token={mint_token(JWT_SECRET, 'operator', ttl=60)}"
    forged = httpx.post(
        f"{gateway.url}/review/v/{video_id}/decision",
        data={"decision": "rejected", "profile": "tate", "note": "forged"},
        headers={"Cookie": operator_cookie, "Origin": "https://evil.example"},
        trust_env=False,
    )
    assert forged.status_code == 403
    assert build_catalog(store).filter(video_id=video_id)["review"].to_list() == ["approved"]
    assert not errors
    (ARTIFACTS / "timings.txt").write_text(f"list page signed in and shown at 390x844: {list_load_s:.2f} s\n")
