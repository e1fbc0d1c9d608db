"""The Python SDK (clients/python) against a real `omnivec serve` over HTTP, sync and async."""

from __future__ import annotations

import asyncio
import io
import math

import httpx
import numpy as np
import pytest
from PIL import Image

from omnivec.server.ids import content_id as server_content_id
from omnivec_client import AsyncClient, Client, Item, OmnivecError, RetryPolicy, content_id
from tests.http_checks import assert_still_serving
from tests.media import encode, scene

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01)


def png(seed: int, size: int = 64) -> bytes:
    return encode(scene(size, size, seed=seed), "PNG")


def noise_png(seed: int, side: int) -> bytes:
    """Incompressible: a PNG of about 3 * side^2 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=0)
    return out.getvalue()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture
def omni(server):
    with Client(server.url, retry=FAST_RETRY) as client:
        yield client
    assert_still_serving(server.url)


@pytest.fixture
def collection(omni, request):
    name = f"sdk-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    omni.create_collection(name, payload_indexes={"group": "keyword"}, exist_ok=True)
    yield name
    omni.delete_collection(name)


def test_content_ids_match_the_server():
    for modality, value in [("text", "a red circle"), ("image", b"\x89PNG..."), ("audio", b"RIFF....")]:
        assert content_id(modality, value) == server_content_id(modality, value)


def test_embed_matches_the_raw_api_in_order_across_requests(server, tmp_path):
    texts = [f"a picture number {i}" for i in range(7)]
    image_path = tmp_path / "scene.png"
    image_path.write_bytes(png(1))
    raw = httpx.post(f"{server.url}/v1/embed", json={"texts": texts}, timeout=30).json()["data"]
    with Client(server.url, batch_size=3) as small_batches:  # 8 inputs -> 3 requests
        result = small_batches.embed(texts, images=[image_path])
    assert len(result) == 8 and result.modalities == ["text"] * 7 + ["image"]
    assert result.dim == len(result.vectors[0]) and result.space_id
    for mine, theirs in zip(result.vectors, raw):
        assert cosine(mine, theirs["embedding"]) > 0.99999
    with Client(server.url) as one_request:
        alone = one_request.embed(images=[png(1)])  # bytes work like paths
    assert cosine(alone.vectors[0], result.vectors[7]) > 0.99999
    assert result.to_numpy().shape == (8, result.dim)


def test_long_texts_are_flagged_or_refused(omni):
    long_text = "word " * 500
    assert omni.embed([long_text, "short"]).truncated == [True, False]
    with pytest.raises(OmnivecError) as info:
        omni.embed([long_text], truncate=False)
    assert info.value.code == "text_too_long" and info.value.status == 422


def test_add_search_get_delete(omni, collection, tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(png(10 + i))
        paths.append(path)
    items = [Item.from_file(p, group="pictures", n=i) for i, p in enumerate(paths)]
    items += [Item(text="a red circle", payload={"group": "notes"}), Item(text="bread", id="doc-bread", payload={"group": "notes"})]
    result = omni.add(collection, items)
    assert result.indexed == 6 and result.skipped == 0 and not result.errors
    assert result.ids[0] == content_id("image", paths[0].read_bytes()) and result.ids[5] == "doc-bread"
    assert omni.get_collection(collection).count == 6

    hits = omni.search(collection, image=paths[2], top_k=2)
    assert hits[0].id == result.ids[2] and hits[0].score > 0.999 and hits[0].payload["n"] == 2
    notes = omni.search(collection, "a red circle", filter={"must": [{"key": "group", "match": {"value": "notes"}}]})
    assert {h.id for h in notes} == {result.ids[4], "doc-bread"} and notes[0].id == result.ids[4]
    assert all(h.modality == "image" for h in omni.search(collection, "anything", modality="image"))
    assert result.ids[1] not in [h.id for h in omni.search(collection, id=result.ids[1])]  # like this item, without it

    stored = omni.get(collection, "doc-bread", with_vector=True)
    assert stored.payload == {"group": "notes"} and len(stored.vector) == omni.get_collection(collection).dim
    assert omni.exists(collection, ["doc-bread", "nope"]) == ["doc-bread"]
    assert omni.delete(collection, filter={"must": [{"key": "group", "match": {"value": "notes"}}]}) == 2
    assert omni.delete(collection, ids=[result.ids[0]]) == 1
    assert omni.get_collection(collection).count == 3


def test_add_resumes_and_reports_bad_items_without_losing_the_rest(omni, collection, tmp_path):
    first = [Item(text=f"note {i}") for i in range(5)]
    assert omni.add(collection, first).indexed == 5
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    again = first + [Item(text="note 5"), Item(image=corrupt, payload={"why": "corrupt"}), Item.from_file(tmp_path / "missing.jpg"), Item(image=png(3))]
    result = omni.add(collection, again, skip_existing=True)
    assert (result.skipped, result.indexed) == (5, 2)
    assert [(e.index, e.code) for e in result.errors] == [(6, "invalid_image"), (7, "unreadable_file")]
    assert "missing.jpg" in result.errors[1].message
    assert result.ids[6] is None and result.ids[7] is None and result.ids[8] == content_id("image", png(3))
    assert omni.get_collection(collection).count == 7


def test_requests_over_the_servers_body_limit_are_split(server, collection):
    """The test server takes 4 MiB bodies; six ~0.9 MiB images in one ~7 MiB request are halved until they fit."""
    images = [noise_png(seed, 550) for seed in range(6)]
    assert all(len(b) < 1024 * 1024 for b in images) and sum(len(b) for b in images) * 4 / 3 > 4 * 1024 * 1024
    with Client(server.url, max_request_bytes=64 * 1024 * 1024) as client:
        result = client.add(collection, [Item(image=b) for b in images], skip_existing=False)
        assert result.indexed == 6 and not result.errors
        assert client.embed(images=images).dim > 0  # the same for /v1/embed


def test_errors_carry_the_servers_code_and_message(omni):
    with pytest.raises(OmnivecError) as info:
        omni.search("no-such-collection", "a dog")
    assert (info.value.status, info.value.code) == (404, "collection_not_found")
    assert "no-such-collection" in str(info.value)
    with pytest.raises(OmnivecError) as info:
        omni.classify(["a dog"], labels=[])
    assert info.value.code == "labels_empty"
    with pytest.raises(OmnivecError) as info:
        omni.embed(images=[b"not an image"])
    assert (info.value.status, info.value.code) == (422, "invalid_image")
    with pytest.raises(ValueError, match="exactly one query"):
        omni.search("whatever", "a dog", id="x")
    with pytest.raises(ValueError, match="exactly one of"):
        Item(text="a", url="https://example.com/a.png")


def test_classify_and_label_sets(omni):
    results = omni.classify(["a red circle", "a blue square"], labels=["a red circle", "a blue square"], top_k=2)
    assert [r.best.label for r in results] == ["a red circle", "a blue square"]
    assert abs(sum(s.score for s in results[0].labels) - 1.0) < 1e-5
    stored = omni.put_labelset("sdk-shapes", ["a red circle", "a blue square"], description="test")
    assert stored.labels == ["a red circle", "a blue square"]
    assert "sdk-shapes" in [s.name for s in omni.list_labelsets()]
    assert omni.classify(["a blue square"], labelset="sdk-shapes")[0].best.label == "a blue square"
    omni.delete_labelset("sdk-shapes")
    with pytest.raises(OmnivecError) as info:
        omni.get_labelset("sdk-shapes")
    assert info.value.code == "labelset_not_found"


def test_audio_search_and_classify(audio_server, tmp_path):
    from tests.media import audio_files

    clips = audio_files(440.0)
    path = tmp_path / "tone.flac"
    path.write_bytes(clips["tone.flac"])
    with Client(audio_server.url) as omni:
        omni.create_collection("sdk-audio", exist_ok=True)
        result = omni.add("sdk-audio", [Item.from_file(path), Item(text="a beep")])
        assert result.indexed == 2 and omni.get("sdk-audio", result.ids[0]).modality == "audio"
        assert omni.search("sdk-audio", audio=path, top_k=1)[0].id == result.ids[0]
        embedded = omni.embed(audios=[path])
        assert embedded.modalities == ["audio"] and embedded.durations_s[0] == pytest.approx(1.3, abs=0.01)
        assert embedded.windows == [None]
        windowed = omni.embed(["a beep"], audios=path, audio_windows=True)
        assert windowed.windows[0] is None and len(windowed.windows[1]) >= 2  # 1.3 s in 1.0 s windows every 0.5 s
        assert windowed.windows[1][0].start_s == 0.0 and windowed.windows[1][-1].end_s == pytest.approx(1.3, abs=0.01)
        assert cosine(windowed.vectors[1], embedded.vectors[0]) > 0.99999 and len(windowed.windows[1][0].vector) == embedded.dim
        assert len(omni.classify(audios=[path], labels=["a beep", "speech"])[0].labels) == 2
        omni.delete_collection("sdk-audio")


def test_async_client_runs_concurrent_calls(server, collection):
    async def main() -> None:
        async with AsyncClient(server.url, retry=FAST_RETRY) as omni:
            assert (await omni.wait_ready(timeout_s=10))["status"] == "ready"
            texts = [f"a concurrent query {i}" for i in range(12)]
            results = await asyncio.gather(*(omni.embed([t]) for t in texts))
            together = await omni.embed(texts)
            for one, row in zip(results, together.vectors):
                assert cosine(one.vectors[0], row) > 0.99999
            added = await omni.add(collection, [Item(text=t) for t in texts[:4]])
            assert added.indexed == 4
            hits = await omni.search(collection, texts[2], top_k=1)
            assert hits[0].id == added.ids[2]
            with pytest.raises(OmnivecError) as info:
                await omni.get_collection("no-such-collection")
            assert info.value.code == "collection_not_found"

    asyncio.run(main())


def test_progress_bar_on_bulk_add(omni, collection, capsys):
    omni.add(collection, [Item(text=f"progress {i}") for i in range(3)], progress=True)
    assert f"index {collection}" in capsys.readouterr().err


def test_no_server_fails_fast_with_what_to_check():
    with Client("http://127.0.0.1:9", retry=FAST_RETRY, timeout_s=2) as omni:
        with pytest.raises(OmnivecError) as info:
            omni.health()
    assert info.value.code == "connection_failed" and "omnivec serve" in str(info.value)


def test_one_item_too_big_for_the_server_is_its_own_error(omni, collection):
    """The test server takes 4 MiB bodies: one ~4.6 MB picture cannot be sent alone; the others still are."""
    huge = noise_png(7, 1240)
    result = omni.add(collection, [Item(text="before"), Item(image=huge, id="huge"), Item(text="after")])
    assert result.indexed == 2 and [(e.index, e.id, e.code) for e in result.errors] == [(1, "huge", "payload_too_large")]
    assert result.ids[0] and result.ids[2] and result.ids[1] is None


def test_a_single_text_or_path_is_one_input(omni, tmp_path):
    path = tmp_path / "one.png"
    path.write_bytes(png(5))
    assert len(omni.embed("hello")) == 1
    assert len(omni.embed(images=path)) == 1
    assert len(omni.classify("a photo", labels=["a", "b"])) == 1


def test_adding_again_replaces_unless_resuming(omni, collection):
    first = omni.add(collection, [Item(text="a note", payload={"v": 1})])
    again = omni.add(collection, [Item(text="a note", payload={"v": 2})])
    assert (again.indexed, again.skipped) == (1, 0) and omni.get(collection, first.ids[0]).payload == {"v": 2}
    resumed = omni.add(collection, [Item(text="a note", payload={"v": 3})], skip_existing=True)
    assert (resumed.indexed, resumed.skipped) == (0, 1) and omni.get(collection, first.ids[0]).payload == {"v": 2}


def test_dot_ids_cannot_be_fetched_by_path(omni, collection):
    with pytest.raises(ValueError, match="URL path"):
        omni.get(collection, "..")


def test_iter_items_pages_through_a_collection(omni, collection):
    added = omni.add(collection, [Item(text=f"item {i}", payload={"group": "a" if i % 3 else "b"}) for i in range(25)] + [Item(image=png(9))])
    everything = list(omni.iter_items(collection, page_size=4))
    assert sorted(i.id for i in everything) == sorted(added.ids) and len(everything) == 26
    only_b = list(omni.iter_items(collection, filter={"must": [{"key": "group", "match": {"value": "b"}}]}, page_size=3))
    assert sorted(i.payload["group"] for i in only_b) == ["b"] * 9
    images = list(omni.iter_items(collection, modality="image", with_vectors=True))
    assert [i.modality for i in images] == ["image"] and len(images[0].vector) == omni.get_collection(collection).dim

    async def count_async() -> int:
        async with AsyncClient(omni.settings.base_url) as client:
            return len([item async for item in client.iter_items(collection, page_size=5)])

    assert asyncio.run(count_async()) == 26
    with pytest.raises(OmnivecError) as info:
        list(omni.iter_items("no-such-collection"))
    assert info.value.code == "collection_not_found"
