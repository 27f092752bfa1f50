"""`/review`: the review site the gateway serves itself (same tokens and roles, the session cookie).

Reached only after the gateway has authenticated the caller and refused cross-site cookie writes
(`app.py`); here viewers are refused every POST with 403, and every path segment is validated
before it names anything in the store (a video id, a profile, one of `RENDER_FILES`).
Media: a local store serves the file with HTTP range requests; S3 redirects to a presigned URL. The
thumbnail and the timeline picture also come scaled down (`?width=N`), for the Dagster UI's metadata.
Re-edit launches a run for the partition through the webserver's GraphQL: `video_job` for the
default profile (it re-runs ingest, analysis and speech detection), else Dagster's asset job over
`speech_segments` and the profile's group, so changed margins or detector apply to every profile.
The list and a video's page ask the same GraphQL for each shown video's latest run, so a pending
video reads queued (no run yet, or its run waits in the queue), running or failed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..names import (
    DEFAULT_PROFILE,
    PROFILE_NAMES,
    RENDER_NAME,
    RENDER_RUN_TAGS,
    TAG_PROFILE,
    THUMBNAIL_NAME,
    TIMELINE_PNG_NAME,
    profile_job_name,
    render_prefix,
)
from ..partitions import is_video_id
from ..remote.queries import PARTITION_TAG
from ..resources import LocalMediaStore, MediaStore
from ..review.decisions import Verdict, decisions_for, record_decision
from ..review.listing import VideoRow, find_video, list_videos, report
from ..webhooks.events import latest_render_checks
from ..webhooks.outbox import enqueue
from ..webhooks.settings import RENDER_APPROVED, WebhookSettings
from .media import published_render_key, serve_render_file
from .policy import Refusal
from .review_pages import is_live, list_page, status_text, video_page
from .tokens import Principal

log = logging.getLogger("autoedit.review")

PAGE_SIZE = 20
MAX_FORM = 16 * 1024
# Pictures served scaled down on `?width=N` (N from MIN_WIDTH to MAX_WIDTH), with their types.
PICTURES = {THUMBNAIL_NAME: "image/jpeg", TIMELINE_PNG_NAME: "image/png"}
MIN_WIDTH, MAX_WIDTH = 16, 1920
SCRIPT = resources.files("autoedit_dagster.gateway").joinpath("static/review.js").read_bytes()
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

LOCATIONS_QUERY = """query { repositoriesOrError { __typename ... on RepositoryConnection {
  nodes { name location { name } jobs { name } } } } }"""
GROUP_ASSETS_QUERY = """query GroupAssets($group: AssetGroupSelector!) { assetNodes(group: $group) {
  assetKey { path } } }"""
IMPLICIT_ASSET_JOB = "__ASSET_JOB"  # Dagster's job over any selection of assets (what the UI materializes with)
SPEECH_ASSET = ["speech_segments"]
# A run's status, as the review page words it ("waiting": no run yet, the upload sensor's next tick).
RUN_STATES = {
    "QUEUED": "queued", "NOT_STARTED": "queued", "STARTING": "queued", "STARTED": "running",
    "CANCELING": "running", "FAILURE": "failed", "CANCELED": "failed", "SUCCESS": "done",
}  # fmt: skip
IN_FLIGHT_STATES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
IN_FLIGHT_QUERY = """query AutoeditUploadInFlight($f: RunsFilter) { runsOrError(filter: $f, limit: 1) {
  __typename ... on Runs { results { runId } } } }"""
LAUNCH_MUTATION = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""


def _csp(store: MediaStore) -> str:
    media = "'self'" if isinstance(store, LocalMediaStore) else "'self' https: http:"
    return (
        f"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src {media}; media-src {media}; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


class ReviewSite:
    def __init__(
        self,
        store: MediaStore,
        webhooks: WebhookSettings,
        graphql_url: str,
        instance: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self._instance_factory = instance
        self._instance: Any = None
        self.webhooks = webhooks
        self.graphql_url = graphql_url

    async def handle(self, request: Request, path: str, principal: Principal, http: httpx.AsyncClient) -> Response:
        parts = [p for p in path.split("/") if p][1:]  # after "review"
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            raise Refusal(405, "method not allowed", f"{method} is not used on /review", {"Allow": "GET, HEAD, POST"})
        if method == "POST":
            if not principal.is_operator:
                raise Refusal(403, "forbidden", "viewers may look at /review but not decide or re-edit")
            if len(parts) == 3 and parts[0] == "v" and parts[2] in ("decision", "reedit"):
                form = await self._form(request)
                video_id = self._video_id(parts[1])
                if parts[2] == "decision":
                    return await self._decide(video_id, form, principal)
                return await self._reedit(video_id, form, principal, http)
            raise Refusal(404, "not found", "no such review action")
        if not parts:
            return await self._list(request, principal, http)
        if parts == ["static", "review.js"]:
            return Response(
                SCRIPT, media_type="text/javascript", headers={**SECURITY_HEADERS, "Cache-Control": "max-age=300"}
            )
        if parts == ["status.json"]:
            return await self._status(request, http)
        if len(parts) == 2 and parts[0] == "v":
            return await self._video(request, self._video_id(parts[1]), principal, http)
        if len(parts) == 4 and parts[0] == "media":
            return await self._media(request, self._video_id(parts[1]), self._profile(parts[2]), parts[3])
        raise Refusal(404, "not found", "no such review page")

    # Validation --------------------------------------------------------------------------------

    @staticmethod
    def _video_id(value: str) -> str:
        if not is_video_id(value):
            raise Refusal(404, "not found", "no such video")
        return value

    @staticmethod
    def _profile(value: str | None) -> str:
        if value not in PROFILE_NAMES:
            raise Refusal(400, "bad request", f"profile must be one of {list(PROFILE_NAMES)}")
        return value

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise Refusal(415, "unsupported media type", "review actions are HTML form posts")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Refusal(413, "payload too large", "review forms are small")
        return dict(parse_qsl(body.decode("utf-8", "replace")))

    def _html(self, text: str) -> HTMLResponse:
        return HTMLResponse(text, headers={**SECURITY_HEADERS, "Content-Security-Policy": _csp(self.store),
                                           "Cache-Control": "no-store"})  # fmt: skip

    # Pages -------------------------------------------------------------------------------------

    async def _list(self, request: Request, principal: Principal, http: httpx.AsyncClient) -> Response:
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        rows = await run_in_threadpool(list_videos, self.store)
        shown = rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        await self._add_runs(http, shown)
        return self._html(list_page(shown, number, len(rows) > number * PAGE_SIZE, principal.label))

    async def _status(self, request: Request, http: httpx.AsyncClient) -> Response:
        wanted = {v for v in request.query_params.get("ids", "").split(",") if is_video_id(v)}
        rows = [row for row in await run_in_threadpool(list_videos, self.store) if row.video_id in wanted]
        await self._add_runs(http, rows[:PAGE_SIZE])
        body = {row.video_id: {"text": status_text(row), "live": is_live(row)} for row in rows}
        return JSONResponse(body, headers=SECURITY_HEADERS)

    async def _video(self, request: Request, video_id: str, principal: Principal, http: httpx.AsyncClient) -> Response:
        row = await run_in_threadpool(find_video, self.store, video_id)
        if row is None:
            raise Refusal(404, "not found", "no such video")
        await self._add_runs(http, [row])
        profile = request.query_params.get("profile") or row.profile
        profile = self._profile(profile)
        found = await run_in_threadpool(report, self.store, video_id, profile)
        history = await run_in_threadpool(decisions_for, self.store, video_id)
        checks = await run_in_threadpool(self._checks, video_id, profile) if found is not None else {}
        page = video_page(row, profile, found, history, checks, principal.is_operator, principal.label)
        return self._html(page)

    async def _add_runs(self, http: httpx.AsyncClient, rows: list[VideoRow]) -> None:
        """Set each row's `run` from its latest run (one GraphQL document); left None if the webserver cannot say."""
        if not rows:
            return
        fields = " ".join(
            f"v{i}: runsOrError(filter: $f{i}, limit: 1) {{ __typename ... on Runs {{ results {{ status }} }} }}"
            for i in range(len(rows))
        )
        query = f"query ReviewRuns({', '.join(f'$f{i}: RunsFilter' for i in range(len(rows)))}) {{ {fields} }}"
        variables = {f"f{i}": {"tags": [{"key": PARTITION_TAG, "value": row.video_id}]} for i, row in enumerate(rows)}
        try:
            data = await self._graphql(http, query, variables)
        except Refusal as refusal:  # the page still shows what the store says
            log.warning("run states for the review page unavailable", extra={"error": refusal.detail})
            return
        for i, row in enumerate(rows):
            answer = data.get(f"v{i}") or {}
            if answer.get("__typename") == "Runs":
                results = answer.get("results") or []
                row.run = RUN_STATES.get(results[0]["status"]) if results else "waiting"

    def _checks(self, video_id: str, profile: str) -> dict[str, dict[str, Any]]:
        """The render checks of the latest render, from the Dagster instance ({} without one)."""
        if self._instance_factory is None:
            return {}
        try:
            if self._instance is None:
                self._instance = self._instance_factory()
            return latest_render_checks(self._instance, video_id, profile)
        except Exception:  # the page still shows the render when the instance cannot be read
            log.exception("reading check results for the review page failed")
            return {}

    async def _media(self, request: Request, video_id: str, profile: str, name: str) -> Response:
        if "width" in request.query_params and name in PICTURES:
            key, _ = await published_render_key(self.store, video_id, profile, name)
            picture = await run_in_threadpool(self._picture, key, request.query_params["width"])
            return Response(picture, media_type=PICTURES[name],
                            headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=60"})  # fmt: skip
        response = await serve_render_file(self.store, video_id, profile, name)
        if response.status_code in (200, 206):  # a range of the video too
            response.headers.update(SECURITY_HEADERS)
        return response

    def _picture(self, key: str, width: str) -> bytes:
        """The picture at `key` scaled down to `width` pixels (never up): for pages that show it small,
        such as the render's metadata in the Dagster UI, whose markdown cannot size an image."""
        import cv2

        if not width.isdigit() or not MIN_WIDTH <= int(width) <= MAX_WIDTH:
            raise Refusal(400, "bad request", f"width must be a whole number of pixels from {MIN_WIDTH} to {MAX_WIDTH}")
        with self.store.local_copy(key) as path:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise Refusal(404, "not found", "not a picture")
        height, current = image.shape[:2]
        if int(width) < current:
            size = (int(width), max(1, round(height * int(width) / current)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(key[key.rindex(".") :], image)
        if not ok:
            raise Refusal(500, "internal error", "the picture could not be encoded")
        return encoded.tobytes()

    # Actions -----------------------------------------------------------------------------------

    async def _decide(self, video_id: str, form: dict[str, str], principal: Principal) -> Response:
        verdicts: dict[str | None, Verdict] = {"approved": "approved", "rejected": "rejected"}
        decision = verdicts.get(form.get("decision"))
        if decision is None:
            raise Refusal(400, "bad request", "decision must be approved or rejected")
        profile = self._profile(form.get("profile") or DEFAULT_PROFILE)
        note = form.get("note", "")
        if decision == "rejected" and not note.strip():
            raise Refusal(400, "bad request", "a rejection needs a note saying why")
        if await run_in_threadpool(report, self.store, video_id, profile) is None:
            raise Refusal(409, "conflict", "nothing rendered to decide on")
        by = principal.subject or "operator"
        made = await run_in_threadpool(record_decision, self.store, video_id, profile, decision, note[:2000], by)
        if decision == "approved":
            data = made.model_dump() | {
                "render_url": self.store.shared_url(render_prefix(video_id, profile) + RENDER_NAME)
            }
            await run_in_threadpool(
                enqueue, self.store, self.webhooks, RENDER_APPROVED, (video_id, profile, made.at), data
            )
        log.info(
            "review decision", extra={"video_id": video_id, "profile": profile, "decision": decision, "subject": by}
        )
        return RedirectResponse(f"/review/v/{video_id}?profile={profile}", 303)

    async def _reedit(
        self, video_id: str, form: dict[str, str], principal: Principal, http: httpx.AsyncClient
    ) -> Response:
        profile = self._profile(form.get("profile") or DEFAULT_PROFILE)
        try:
            margin = float(form.get("margin_s", "0.2"))
        except ValueError:
            raise Refusal(400, "bad request", "margin_s must be a number of seconds") from None
        if not 0 <= margin <= 2:
            raise Refusal(400, "bad request", "margin_s must be between 0 and 2")
        cut_on = form.get("cut_on", "voice")
        if cut_on not in ("voice", "loudness"):
            raise Refusal(400, "bad request", "cut_on must be voice or loudness")
        config = {"detector": cut_on, "margin_before_s": margin, "margin_after_s": margin}
        run_config = {"ops": {"speech_segments": {"config": config}}}
        # The default profile's job re-runs speech detection itself; another profile's job only loads
        # it, so that one runs as Dagster's asset job over speech_segments and the profile's group.
        group = None if profile == DEFAULT_PROFILE else profile
        job = profile_job_name(profile) if group is None else IMPLICIT_ASSET_JOB
        run_id = await self._launch(http, job, video_id, run_config, principal, profile, group)
        log.info("re-edit launched", extra={"video_id": video_id, "job": job, "run_id": run_id,
                                            "subject": principal.subject, "profile": profile})  # fmt: skip
        return RedirectResponse(f"/review/v/{video_id}?profile={profile}", 303)

    async def in_flight(self, http: httpx.AsyncClient, video_id: str) -> bool:
        """True if a run of `video_id` is queued or running (the webserver's word; 502 if it cannot say)."""
        data = await self._graphql(http, IN_FLIGHT_QUERY, {"f": {"tags": [{"key": PARTITION_TAG, "value": video_id}],
                                                                 "statuses": IN_FLIGHT_STATES}})  # fmt: skip
        answer = data.get("runsOrError") or {}
        if answer.get("__typename") != "Runs":
            raise Refusal(502, "bad gateway", "the webserver could not list this video's runs")
        return bool(answer.get("results"))

    async def _graphql(self, http: httpx.AsyncClient, query: str, variables: dict | None = None) -> dict:
        try:
            reply = await http.post(self.graphql_url, json={"query": query, "variables": variables or {}})
            data = reply.json()
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise Refusal(502, "bad gateway", f"the webserver's GraphQL did not answer ({type(exc).__name__})") from exc
        if "errors" in data or "data" not in data:
            raise Refusal(502, "bad gateway", "the webserver's GraphQL refused the query")
        return data["data"]

    async def _launch(
        self,
        http: httpx.AsyncClient,
        job: str,
        video_id: str,
        run_config: dict,
        principal: Principal,
        profile: str,
        group: str | None,
    ) -> str:
        repos = (await self._graphql(http, LOCATIONS_QUERY))["repositoriesOrError"].get("nodes", [])
        home = next((r for r in repos if any(j["name"] == job for j in r["jobs"])), None)
        if home is None:
            raise Refusal(502, "bad gateway", f"no code location has {job}")
        selector: dict[str, Any] = {
            "repositoryLocationName": home["location"]["name"], "repositoryName": home["name"], "jobName": job,
        }  # fmt: skip
        tags = {PARTITION_TAG: video_id, "autoedit/video_id": video_id, TAG_PROFILE: profile,
                "autoedit/requested_by": principal.subject or "operator"}  # fmt: skip
        if group is not None:
            wanted = {"groupName": group, "repositoryName": home["name"],
                      "repositoryLocationName": home["location"]["name"]}  # fmt: skip
            nodes = (await self._graphql(http, GROUP_ASSETS_QUERY, {"group": wanted}))["assetNodes"]
            if not nodes:
                raise Refusal(502, "bad gateway", f"no assets in group {group}")
            selector["assetSelection"] = [{"path": SPEECH_ASSET}, *({"path": n["assetKey"]["path"]} for n in nodes)]
            tags |= RENDER_RUN_TAGS  # the asset job has no tags of its own: the render limit counts this one
        params = {
            "selector": selector,
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = (await self._graphql(http, LAUNCH_MUTATION, {"params": params}))["launchRun"]
        if result.get("__typename") != "LaunchRunSuccess":
            raise Refusal(502, "bad gateway", f"launch refused: {result.get('message') or result.get('__typename')}")
        return str(result["run"]["runId"])


def graphql_url(upstream: str) -> str:
    parts = urlsplit(upstream.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{parts.path}/graphql"
