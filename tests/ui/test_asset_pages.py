"""The asset graph and a video partition's page in headless Chromium, directly and through the gateway.

Each page must show what the instance holds (the asset nodes, the materialized partition of
`tate/render` and its run) and nothing may have gone wrong on the way: no uncaught script error,
no HTTP error status, no GraphQL `errors` or `PythonError` in any answer, no error text on the
page. A screenshot of each page is saved in the test's tmp dir.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from testsupport.servers import JWT_SECRET

pytestmark = pytest.mark.timeout(420)

TATE_ASSETS = ("crop_path", "edit_timeline", "render", "previews", "timeline_exports", "edit_report")
ERROR_TEXT = re.compile(r"\bError\b|Something went wrong|An error occurred|Unexpected error")


class PageWatch:
    """What went wrong while a page loaded: script errors, HTTP errors, GraphQL errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.script_errors: list[str] = []
        self.responses: list[Response] = []
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        page.on("response", lambda response: self.responses.append(response))

    def problems(self) -> list[str]:
        found = [f"script error: {error}" for error in self.script_errors]
        for response in self.responses:
            if response.status >= 400:
                found.append(f"{response.status} {response.request.method} {response.url}")
            elif response.request.method == "POST" and response.url.split("?")[0].endswith("/graphql"):
                text = response.text()
                answers = json.loads(text)
                for answer in answers if isinstance(answers, list) else [answers]:
                    if answer.get("errors"):
                        found.append(f"GraphQL errors from {response.url}: {answer['errors']}")
                if '"PythonError"' in text:
                    found.append(f"PythonError in a GraphQL answer: {text[:300]}")
        body = self.page.inner_text("body")
        found += [f"error text on the page: {m.group(0)!r}" for m in ERROR_TEXT.finditer(body)]
        return found


def visit(
    page: Page, url: str, visible: list[str], screenshot: Path, settled: Callable[[], None] | None = None
) -> PageWatch:
    """Open `url`, wait until every text in `visible` is shown, `settled()` passes and the page is quiet;
    screenshot it."""
    watch = PageWatch(page)
    page.goto(url)
    for text in visible:
        expect(page.get_by_text(text, exact=True).first).to_be_visible()
    if settled is not None:
        settled()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=screenshot)
    return watch


def expect_materialized(page: Page, *names: str) -> None:
    """Graph nodes drawn green: the UI loaded the assets' live state (Dagster 1.13's node style)."""
    green = page.locator('[style*="--color-background-green"]')
    for name in names:
        expect(green.filter(has=page.get_by_text(name, exact=True)).first).to_be_visible()


def location_name(webserver_url: str) -> str:
    """The code location serving `tate/render` (its name is part of the group page's URL)."""
    query = 'query { assetNodes(assetKeys: [{path: ["tate", "render"]}]) { repository { location { name } } } }'
    data = httpx.post(f"{webserver_url}/graphql", json={"query": query}, timeout=30, trust_env=False).json()
    return data["data"]["assetNodes"][0]["repository"]["location"]["name"]


def test_asset_graph_shows_the_groups_and_the_tate_assets(deployment, browser_context, tmp_path: Path) -> None:
    page = browser_context.new_page()
    url = deployment.webserver.url
    lineage = visit(page, f"{url}/asset-groups", ["ingest", "analysis", "tate", "yoko", "square", "catalog"],
                    tmp_path / "global-lineage.png")  # fmt: skip
    assert lineage.problems() == []
    expect(page.get_by_text("Global asset lineage")).to_be_visible()

    # The group's graph: its own nodes, and the upstream assets it reads linked at the edge.
    group = visit(
        page, f"{url}/locations/{location_name(url)}/asset-groups/tate",
        ["render", "edit_timeline", "crop_path", "media_analysis", "source_video"], tmp_path / "tate-graph.png",
        settled=lambda: expect_materialized(page, *TATE_ASSETS),
    )  # fmt: skip
    assert group.problems() == []
    page.close()


def test_partition_page_shows_the_rendered_video(deployment, browser_context, tmp_path: Path) -> None:
    page = browser_context.new_page()
    video_id = deployment.video_id
    watch = visit(
        page, f"{deployment.webserver.url}/assets/tate/render?view=partitions&partition={video_id}",
        ["render", "Materialized", "video_job", "tate__render"], tmp_path / "tate-render-partition.png",
    )  # fmt: skip
    assert watch.problems() == []
    expect(page.get_by_text(video_id, exact=True).first).to_be_visible()
    final = f"/storage/renders/{video_id}/tate/final.mp4"
    expect(page.get_by_text(re.compile(re.escape(final) + "$")).first).to_be_visible()
    page.close()


@pytest.fixture(scope="module")
def gateway(deployment, redis_url):
    servers = deployment.servers
    gateway = servers.start_gateway(deployment.webserver.url, redis_url, rate_limit=1000, name="ui-gateway")
    servers.wait_gateway(gateway)
    return gateway


def viewer_token(subject: str) -> str:
    from autoedit_dagster.gateway.tokens import mint_token

    return mint_token(JWT_SECRET, "viewer", subject=subject, ttl=600)


def test_the_ui_through_the_gateway_with_a_login_cookie(deployment, browser_context, gateway, tmp_path) -> None:
    """A viewer signs in with `/login?token=`; the group graph then loads through the gateway on the cookie."""
    viewer = viewer_token("ui-viewer")
    page = browser_context.new_page()

    page.goto(f"{gateway.url}/asset-groups")  # no cookie yet: the sign-in page
    expect(page.get_by_text("AutoEditTATE", exact=True)).to_be_visible()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    target = f"/locations/{location_name(deployment.webserver.url)}/asset-groups/tate"
    watch = visit(page, f"{gateway.url}/login?token={viewer}&next={target}",
                  ["render", "edit_timeline", "media_analysis"], tmp_path / "tate-graph-via-gateway.png",
                  settled=lambda: expect_materialized(page, *TATE_ASSETS))  # fmt: skip
    assert page.url == f"{gateway.url}{target}"
    assert [c["name"] for c in browser_context.cookies(gateway.url)] == ["autoedit_token"]
    assert watch.problems() == []
    # One page load is this many requests against the viewer's per-minute rate limit.
    static = sum("/_next/" in url for url in requests)
    print(f"\nUI page load through the gateway: {len(requests)} requests ({static} static files)")
    page.close()


def test_the_render_page_shows_the_thumbnail_and_timeline(deployment, browser_context, gateway, tmp_path) -> None:
    """The render's partition page, opened through the gateway: the thumbnail and the timeline picture
    load (from the gateway's media route, on the login cookie), the links open it, the ffmpeg
    command is folded away, and a person reads a summary with units."""
    video_id = deployment.video_id
    page = browser_context.new_page()
    target = f"/assets/tate/render?view=partitions&partition={video_id}"
    watch = visit(page, f"{gateway.url}/login?token={viewer_token('ui-render')}&next={quote(target, safe='')}",
                  ["render", "Materialized"], tmp_path / "tate-render-via-gateway.png")  # fmt: skip
    assert watch.problems() == []
    media = f"/review/media/{video_id}/tate/"
    pictures = {f"thumbnail of {video_id}": ("thumb.jpg", 270), f"timeline of {video_id}": ("timeline.png", 800)}
    for alt, (name, width) in pictures.items():
        picture = page.locator(f'img[alt="{alt}"]').first
        expect(picture).to_be_visible()
        assert picture.get_attribute("src") == f"{media}{name}?width={width}"
        # loaded, and scaled down by the gateway (the stored thumbnail is 1080 wide, the timeline 1600)
        assert picture.evaluate("img => img.complete && img.naturalWidth") == width, f"{name} did not load"
    loaded = [r for r in watch.responses if media in r.url]
    assert loaded and all(r.status == 200 for r in loaded)
    expect(page.locator(f'a[href="{media}final.mp4"]').first).to_be_visible()
    opened = page.request.get(f"{gateway.url}{media}final.mp4")  # what the link opens, on the page's cookie
    assert opened.status == 200 and opened.headers["content-type"] == "video/mp4"
    expect(page.get_by_text(re.compile(r"^\d+\.\d s kept of \d+\.\d s")).first).to_be_visible()
    # The ffmpeg command is folded: the UI shows markdown over 1,000 characters behind a button.
    command_row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="ffmpeg_command", exact=True))
    expect(command_row.get_by_text("-hide_banner")).to_have_count(0)
    command_row.get_by_text("[Show Markdown]").click()
    expect(
        page.get_by_role("dialog").locator("code").filter(has_text=re.compile(r"^ffmpeg \\\s+-hide_banner"))
    ).to_be_visible()
    page.screenshot(path=tmp_path / "tate-render-ffmpeg-command.png")
    page.close()
