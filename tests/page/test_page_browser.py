"""The search page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium, never a
downloaded build) against `omnivec serve` on 127.0.0.1 with API keys and a demo collection of
pictures, sounds and a text, on the tiny three-tower test bundle.

Screenshots are kept as artefacts: in $OMNIVEC_SCREENSHOTS if set, else in pytest's tmp dir (the
path is printed; pytest -s shows it).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest

from omnivec.server.ids import content_id
from omnivec.server_process import ServerProcess
from tests.media import encode, encode_audio, scene, tone
from tests.media_server import MediaServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
KEY = "page-test-key"
SHAPES = [("circle", "red"), ("square", "blue"), ("triangle", "green"), ("circle", "orange")]
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 210), "green": (40, 160, 70), "orange": (245, 150, 30)}

if not Path(CHROMIUM).exists():
    reason = "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
    if os.environ.get("CI"):
        raise RuntimeError(reason)  # CI installs it: a missing browser there is a failure, not a skip
    pytest.skip(reason, allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' installs playwright")


def picture(shape: str, colour: str, seed: int):
    """A distinct little picture per demo item: one coloured shape on a soft textured background."""
    from PIL import ImageDraw, ImageFilter

    image = scene(width=240, height=180, seed=seed).filter(ImageFilter.GaussianBlur(6)).point(lambda v: 150 + v // 3)
    draw = ImageDraw.Draw(image)
    box = (70, 40, 170, 140)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon([(120, 35), (175, 140), (65, 140)], fill=COLOURS[colour])
    return image


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """A demo manifest: four pictures, two sounds, one text; returns their files by name."""
    root = tmp_path_factory.mktemp("page-demo")
    (root / "media").mkdir()
    files, rows = {}, []
    for k, (shape, colour) in enumerate(SHAPES):
        files[f"scene{k}.png"] = encode(picture(shape, colour, seed=k), "PNG")
        rows.append({"path": f"media/scene{k}.png", "payload": {"label": f"scene {k}", "caption": f"a {colour} {shape}", "kind": "picture"}})
    for name, freq in (("low.wav", 220.0), ("high.wav", 880.0)):
        files[name] = encode_audio(tone(freq, 2.0, 16000), 16000)
        rows.append({"path": f"media/{name}", "payload": {"label": f"a {int(freq)} Hz tone", "kind": "sound"}})
    for name, data in files.items():
        (root / "media" / name).write_bytes(data)
    rows.append({"text": "a short note about red circles", "payload": {"label": "note"}})
    (root / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"items": root / "items.jsonl", "files": files}


@pytest.fixture(scope="module")
def server(tiny_audio_bundle, demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page-server")
    env = {
        "OMNIVEC_DATA_DIR": str(tmp / "data"),
        "OMNIVEC_DEMO_ITEMS": str(demo["items"]),
        "OMNIVEC_SERVER__API_KEYS": f"other-key,{KEY}",
        "OMNIVEC_FETCH__ALLOW_PRIVATE": '["127.0.0.1/32"]',  # the URL item test's own media server
    }
    proc = ServerProcess(tiny_audio_bundle, log=tmp / "server.log", env=env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ["OMNIVEC_SCREENSHOTS"]) if os.environ.get("OMNIVEC_SCREENSHOTS") else tmp_path_factory.mktemp("page-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nsearch page screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    """A fresh tab on the page, key entered, collections loaded; fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(server.url + "/")
    tab.wait_for_selector("#key-dialog[open]")
    tab.fill("#key-input", KEY)
    tab.click("#key-ok")
    tab.wait_for_selector("#collection option[value=demo]", state="attached")
    yield tab
    context.close()
    assert errors == []


def _search_text(tab, text: str) -> None:
    tab.fill("#q", text)
    tab.click("#search-form button[type=submit]")
    tab.wait_for_selector("#search-status:text-matches('results? in')")


def _media_loaded(tab) -> None:
    """Every result card shows its kept media: pictures decoded, players ready, texts shown."""
    tab.wait_for_function(
        """() => [...document.querySelectorAll('#results .card')].every((card) => {
            const img = card.querySelector('figure img'), audio = card.querySelector('figure audio');
            if (card.dataset.modality === 'image') return img && img.complete && img.naturalWidth > 0;
            if (card.dataset.modality === 'audio') return audio && audio.readyState >= 1 && audio.duration > 0;
            return card.querySelector('figure blockquote') !== null;
        })"""
    )


def _drop(tab, selector: str, data: bytes, name: str, mime: str, event: str = "drop") -> None:
    """A real DataTransfer holding a File, dispatched as a drop on the zone (or a paste on the document)."""
    tab.evaluate(
        """([selector, b64, name, mime, event]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: mime }));
            if (event === 'paste') {
                document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
                return;
            }
            const zone = document.querySelector(selector);
            zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        }""",
        [selector, base64.b64encode(data).decode(), name, mime, event],
    )


def _first_result(tab) -> tuple[str, float]:
    card = tab.locator("#results .card").first
    return card.get_attribute("data-id"), float(card.locator(".score .num").inner_text())


def test_page_files_are_open_while_api_and_media_need_the_key(server, demo):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"] and "<script src=\"/ui/app.js\"" in page.text
    assert httpx.get(server.url + "/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(server.url + "/ui/nothing.js").status_code == 404
    assert httpx.get(server.url + "/ui/../v1/collections").status_code in (401, 404)  # no way around the key
    picture = content_id("image", demo["files"]["scene0.png"])
    media = f"{server.url}/v1/collections/demo/media/{picture}"
    assert httpx.get(media).status_code == 401 and httpx.get(server.url + "/v1/collections").status_code == 401
    assert httpx.get(media, headers={"Authorization": f"Bearer {KEY}"}).headers["content-type"] == "image/webp"


def test_asks_for_the_key_once_and_keeps_it_in_the_tab_only(browser, server, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(server.url + "/")
    tab.wait_for_selector("#key-dialog[open]")
    tab.fill("#key-input", "wrong-key")
    tab.screenshot(path=shots / "api-key-prompt.png")
    tab.click("#key-ok")
    tab.wait_for_selector("#key-dialog[open] #key-why:text('not accepted')")  # asked again, saying why
    tab.fill("#key-input", KEY)
    tab.click("#key-ok")
    tab.wait_for_selector("#collection option[value=demo]", state="attached")
    assert tab.evaluate("sessionStorage.getItem('omnivec.apiKey')") == KEY
    assert tab.evaluate("localStorage.length") == 0 and context.cookies() == []  # nothing outlives the tab
    _search_text(tab, "scene")  # many concurrent requests (search, every result's media), no further prompt
    _media_loaded(tab)
    assert not tab.is_visible("#key-dialog")
    tab.reload()
    tab.wait_for_selector("#collection option[value=demo]", state="attached")
    assert not tab.is_visible("#key-dialog")  # same tab: remembered
    other = context.new_page()
    other.goto(server.url + "/")
    other.wait_for_selector("#key-dialog[open]")  # a new tab asks again
    context.close()


def test_text_search_shows_pictures_plays_sounds_and_filters_by_modality(page, shots):
    _search_text(page, "a picture of a scene")
    _media_loaded(page)
    modalities = page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.modality)")
    assert sorted(modalities) == ["audio", "audio", "image", "image", "image", "image", "text"]
    assert page.locator("#results .card[data-modality=text] blockquote").inner_text() == "a short note about red circles"
    labels = page.eval_on_selector_all("#results .card[data-modality=image] img", "imgs => imgs.map(i => i.alt)")
    assert sorted(labels) == sorted(f"a {colour} {shape}" for shape, colour in SHAPES)
    page.screenshot(path=shots / "search-text.png", full_page=True)

    page.click("label[for=m-audio]")
    page.wait_for_function("() => [...document.querySelectorAll('#results .card')].length === 2")
    _media_loaded(page)
    assert page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.modality)") == ["audio", "audio"]
    player = page.locator("#results .card audio").first
    player.evaluate("audio => { audio.muted = true; return audio.play(); }")
    page.wait_for_function("() => document.querySelector('#results .card audio').currentTime > 0.2")
    assert player.evaluate("audio => audio.duration") == pytest.approx(2.0, abs=0.05)  # the preview of a 2 s clip
    page.screenshot(path=shots / "search-audio.png", full_page=True)


def test_dropping_pasting_and_choosing_files_searches_by_them(page, demo, shots):
    picture = demo["files"]["scene2.png"]
    _drop(page, "#drop", picture, "scene2.png", "image/png")
    page.wait_for_selector("#search-status:text-matches('results? in')")
    assert _first_result(page) == (content_id("image", picture), pytest.approx(1.0, abs=1e-3))  # the picture itself first
    assert page.is_visible("#search-query-file img")
    _media_loaded(page)
    page.screenshot(path=shots / "search-dropped-image.png", full_page=True)

    other = demo["files"]["scene1.png"]
    _drop(page, "#drop", other, "clipboard.png", "image/png", event="paste")
    page.wait_for_function(f"() => document.querySelector('#results .card')?.dataset.id === '{content_id('image', other)}'")

    sound = demo["files"]["high.wav"]
    page.set_input_files("#search-file", files=[{"name": "high.wav", "mimeType": "audio/wav", "buffer": sound}])
    page.wait_for_function(f"() => document.querySelector('#results .card')?.dataset.id === '{content_id('audio', sound)}'")
    assert _first_result(page)[1] == pytest.approx(1.0, abs=1e-3)


def test_classify_view_shows_label_scores_as_bars(page, demo, shots):
    page.click("#tab-classify")
    page.fill("#classify-text", "a short note about red circles")
    page.fill("#labels", "circle\nsquare\ntone")
    page.fill("#templates", "a drawing of a {}.")
    page.click("#classify-form button[type=submit]")
    page.wait_for_selector("#classify-results li")
    bars = page.locator("#classify-results [role=meter]")
    assert bars.count() == 3
    scores = [float(bars.nth(i).get_attribute("aria-valuenow")) for i in range(3)]
    assert sum(scores) == pytest.approx(1.0, abs=1e-3) and scores == sorted(scores, reverse=True)  # softmax, best first
    assert "softmax" in page.inner_text("#classify-status")

    page.set_input_files("#classify-file", files=[{"name": "scene3.png", "mimeType": "image/png", "buffer": demo["files"]["scene3.png"]}])
    page.click("#classify-form button[type=submit]")
    page.wait_for_selector("#classify-results h3:text('scene3.png')")
    assert page.locator("#classify-results [role=meter]").count() == 3
    page.screenshot(path=shots / "classify.png", full_page=True)

    page.fill("#labels", "")
    page.click("#classify-form button[type=submit]")
    page.wait_for_selector("#classify-status.error")  # the server's message, shown as an error
    assert "labels" in page.inner_text("#classify-status")


def test_keyboard_only_search(page):
    page.focus("#q")
    page.keyboard.type("scene")
    page.keyboard.press("Enter")
    page.wait_for_selector("#search-status:text-matches('results? in')")
    page.focus("#tab-search")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-classify" and page.is_visible("#panel-classify")
    assert not page.is_visible("#panel-search")



def test_url_items_show_their_url(page, server, shots):
    auth = {"Authorization": f"Bearer {KEY}"}
    with MediaServer({"remote.png": encode(scene(width=200, height=150, seed=7), "PNG")}) as remote:
        url = f"{remote.url}/img/remote.png"
        assert httpx.post(f"{server.url}/v1/collections", json={"name": "links"}, headers=auth).status_code == 201
        added = httpx.post(f"{server.url}/v1/collections/links/items", json={"items": [{"url": url, "id": "remote"}]}, headers=auth)
        assert added.json()["indexed"] == 1
        page.reload()  # the key is remembered by the tab: no prompt
        page.wait_for_selector("#collection option[value=links]", state="attached")
        page.select_option("#collection", "links")
        _search_text(page, "anything")
        _media_loaded(page)  # the picture, loaded by the browser from its URL
        assert page.locator("#results .card a.source").inner_text() == url
        page.screenshot(path=shots / "search-url-item.png")
