"""`/review` over HTTP: roles, CSRF, what paths can name, escaping, media by range or presigned redirect."""

import json

import httpx
import pytest

from autoedit_dagster.names import REPORT_NAME, render_prefix
from autoedit_dagster.partitions import video_id_for_upload
from autoedit_dagster.resources import MediaStore, S3MediaStore
from autoedit_dagster.review.decisions import decisions_for
from autoedit_dagster.webhooks.outbox import PENDING_PREFIX, Delivery
from autoedit_dagster.webhooks.settings import WebhookSettings

from .conftest import bearer, token

UPLOAD = "uploads/<script>alert(1)</script>.mp4"
VIDEO = video_id_for_upload(UPLOAD)
RENDER = bytes(range(256)) * 40
HOOKS = WebhookSettings.from_env(
    {"AUTOEDIT_WEBHOOK_URLS": "http://127.0.0.1:9/hook", "AUTOEDIT_WEBHOOK_SECRET": "s" * 40}
)


@pytest.fixture
def review(start_gateway, fake_upstream: str, store: MediaStore) -> tuple[str, MediaStore]:
    store.write_bytes(UPLOAD, b"source")
    prefix = render_prefix(VIDEO, "tate")
    report = {"video_id": VIDEO, "profile": "tate", "upload_key": UPLOAD, "source_duration": 10.0,
              "output_duration": 7.5, "seconds_removed": 2.5, "shots": 2, "render_uri": "x"}  # fmt: skip
    store.write_bytes(prefix + REPORT_NAME, json.dumps(report).encode())
    store.write_bytes(prefix + "final.mp4", RENDER)
    return start_gateway(fake_upstream, rate_limit=0, store=store, webhooks=HOOKS), store


def decide(client: httpx.Client, url: str, headers: dict, **form: str) -> httpx.Response:
    return client.post(f"{url}/review/v/{VIDEO}/decision", data=form, headers=headers)


def test_the_list_escapes_names_and_viewers_get_no_buttons(review, client: httpx.Client) -> None:
    url, _ = review
    listing = client.get(f"{url}/review", headers=bearer(token("viewer")))
    assert listing.status_code == 200
    assert "<script>alert(1)</script>" not in listing.text and "&lt;script&gt;" in listing.text
    assert "script-src 'self'" in listing.headers["content-security-policy"]
    page = client.get(f"{url}/review/v/{VIDEO}", headers=bearer(token("viewer")))
    assert page.status_code == 200 and "kept 7.5 s of 10.0 s" in page.text and 'id="approve"' not in page.text
    assert 'id="approve"' in client.get(f"{url}/review/v/{VIDEO}", headers=bearer(token("operator"))).text
    anonymous = client.get(f"{url}/review", headers={"Accept": "text/html"})
    assert anonymous.status_code == 401 and 'name="token"' in anonymous.text


def test_viewers_and_other_sites_cannot_decide(review, client: httpx.Client) -> None:
    url, backend = review
    assert decide(client, url, bearer(token("viewer")), decision="approved", profile="tate").status_code == 403
    cookie = {"Cookie": f"autoedit_token={token('operator')}"}
    no_origin = decide(client, url, cookie, decision="approved", profile="tate")
    other_site = decide(client, url, {**cookie, "Origin": "https://evil.example"}, decision="approved", profile="tate")
    assert (no_origin.status_code, other_site.status_code) == (403, 403)
    assert decisions_for(backend, VIDEO) == []
    assert not list(backend.list(PENDING_PREFIX))


def test_an_operator_decides_and_an_approval_queues_render_approved(review, client: httpx.Client) -> None:
    url, backend = review
    operator = bearer(token("operator", subject="alice"))
    assert decide(client, url, operator, decision="rejected", profile="tate").status_code == 400  # no note
    assert decide(client, url, operator, decision="maybe", profile="tate").status_code == 400
    assert decide(client, url, operator, decision="approved", profile="../x").status_code == 400
    rejected = decide(client, url, operator, decision="rejected", profile="tate", note="cut too tight")
    assert rejected.status_code == 303
    assert decide(client, url, operator, decision="approved", profile="tate").status_code == 303
    made = decisions_for(backend, VIDEO)
    assert [(d.decision, d.note, d.by) for d in made] == [
        ("rejected", "cut too tight", "alice"),
        ("approved", "", "alice"),
    ]
    (queued,) = [Delivery.model_validate_json(backend.read_bytes(o.key)) for o in backend.list(PENDING_PREFIX)]
    assert queued.event_type == "render.approved" and json.loads(queued.body)["data"]["by"] == "alice"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/review/media/{VIDEO}/tate/secret.txt", 404),
        (f"/review/media/{VIDEO}/evil/final.mp4", 400),
        (f"/review/media/{VIDEO}%2f..%2f..%2fids/tate/final.mp4", 404),
        ("/review/v/not a video", 404),
        (f"/review/media/{VIDEO}/square/final.mp4", 404),
    ],
)
def test_paths_name_only_published_render_files(review, client: httpx.Client, path: str, status: int) -> None:
    url, _ = review
    assert client.get(url + path, headers=bearer(token("viewer"))).status_code == status


def test_media_is_served_by_range_or_a_presigned_redirect(review, client: httpx.Client) -> None:
    url, backend = review
    media = f"{url}/review/media/{VIDEO}/tate/final.mp4"
    reply = client.get(media, headers={**bearer(token("viewer")), "Range": "bytes=100-199"})
    if isinstance(backend, S3MediaStore):
        assert reply.status_code == 302 and "Signature=" in reply.headers["location"]
        fetched = client.get(reply.headers["location"], headers={"Range": "bytes=100-199"})
        assert fetched.status_code == 206 and fetched.content == RENDER[100:200]
    else:
        assert reply.status_code == 206 and reply.content == RENDER[100:200]


def test_pictures_come_scaled_down_on_width(review, client: httpx.Client) -> None:
    """What the Dagster UI's markdown shows (it cannot size an image): on both stores, never scaled up."""
    import cv2
    import numpy as np

    url, store = review
    thumb = render_prefix(VIDEO, "tate") + "thumb.jpg"
    store.write_bytes(thumb, cv2.imencode(".jpg", np.full((640, 360, 3), 200, np.uint8))[1].tobytes())
    viewer = bearer(token("viewer"))
    reply = client.get(f"{url}/review/media/{VIDEO}/tate/thumb.jpg?width=90", headers=viewer)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(reply.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (160, 90)
    whole = client.get(f"{url}/review/media/{VIDEO}/tate/thumb.jpg?width=1000", headers=viewer)
    assert cv2.imdecode(np.frombuffer(whole.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (640, 360)
    for bad in ("abc", "0", "-5", "99999"):
        refused = client.get(f"{url}/review/media/{VIDEO}/tate/thumb.jpg?width={bad}", headers=viewer)
        assert refused.status_code == 400, bad
    assert client.get(f"{url}/review/media/{VIDEO}/tate/thumb.jpg?width=90").status_code in (401, 303)
