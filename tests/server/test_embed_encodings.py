"""Compact output encodings (int8, uint8, binary, ubinary) and `dimensions` of /v1/embed and /v1/embeddings.

On real embeddings: omnivec-mini's MiniLM text tower (pretrained weights), served by a real in-process
server. Tolerances follow from the quantisation, not from one run:

* int8 is round(127 x) with |x| <= 1, so each component is off by at most 1/254 (no clipping) and a
  pair's dot product by e = sum of per-component rounding terms, a sum of d independent terms of
  variance (a_i^2 + b_i^2) / (12 * 127^2): sd = sqrt(2 / 12) / 127 for unit vectors. Over the ~10^3
  pairs here, |e| <= 6 sd holds with probability > 1 - 10^-5; an order between two documents is
  required to survive when the float gap exceeds twice that.
* binary keeps only signs: no per-pair bound exists, so the test is that Hamming distance carries the
  ranking information of the cosine: Kendall's tau between them far above what unrelated orders give.
"""

from __future__ import annotations

import base64
import math

import httpx
import numpy as np
import pytest

from omnivec.server.api.app import create_app
from tests.http_checks import assert_error
from tests.inprocess import InProcessServer, one_thread_settings

SUBJECTS = ["a dog", "a cat", "a red car", "an old bicycle", "a sailing boat", "a steam train", "a bowl of soup", "a violin"]
SCENES = ["on a beach at sunset", "in a snowy forest", "in a busy city street", "inside a quiet library", "next to a river"]
TEXTS = [f"{s} {p}" for s in SUBJECTS for p in SCENES]  # 40 texts with graded similarity (shared subject or scene)
INT8_SD = math.sqrt(2 / 12) / 127  # sd of a pair's int8 dot-product error, unit vectors
INT8_TOL = 6 * INT8_SD


@pytest.fixture(scope="module")
def mini(mini_text_bundle, tmp_path_factory):
    settings = one_thread_settings(tmp_path_factory.mktemp("enc"), mini_text_bundle)
    with InProcessServer(create_app(settings)) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            yield client


def _embed(client, **body) -> dict:
    r = client.post("/v1/embed", json={"texts": TEXTS, **body})
    assert r.status_code == 200, r.text
    return r.json()


def _matrix(body: dict, dtype) -> np.ndarray:
    return np.array([d["embedding"] for d in body["data"]], dtype=dtype)


def test_int8_and_uint8_keep_the_cosine_ranking(mini):
    x = _matrix(_embed(mini), np.float64)
    q_body = _embed(mini, encoding="int8")
    assert q_body["encoding"] == "int8"
    q = _matrix(q_body, np.int64)
    u = _matrix(_embed(mini, encoding="uint8"), np.int64)
    assert q.min() >= -127 and q.max() <= 127 and np.array_equal(u, q + 128)
    assert np.abs(x - q / 127).max() <= 0.5 / 127 + 1e-7  # rounding only, never clipped
    s, t = x @ x.T, (q @ q.T) / 127**2
    off = ~np.eye(len(TEXTS), dtype=bool)
    assert np.abs(s - t)[off].max() <= INT8_TOL
    decided = 0
    for i in range(len(TEXTS)):
        others = [j for j in range(len(TEXTS)) if j != i]
        for a in others:
            for b in others:
                if s[i, a] - s[i, b] > 2 * INT8_TOL:
                    decided += 1
                    assert t[i, a] > t[i, b], (i, a, b, s[i, a], s[i, b], t[i, a], t[i, b])
    assert decided > 10_000  # most orders are wide enough to be checked (the test is not vacuous)


def test_binary_bits_are_the_signs_and_hamming_follows_the_cosine(mini):
    x = _matrix(_embed(mini), np.float64)
    ub = _matrix(_embed(mini, encoding="ubinary"), np.uint8)
    b = _matrix(_embed(mini, encoding="binary"), np.int64)
    dim = x.shape[1]
    assert ub.shape[1] == math.ceil(dim / 8) and np.array_equal(b, ub.astype(np.int64) - 128)
    bits = np.unpackbits(ub, axis=1)[:, :dim]
    assert np.array_equal(bits.astype(bool), x > 0)  # first component in the highest bit of the first byte
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    iu = np.triu_indices(len(TEXTS), 1)
    cos, ham = x @ x.T, hamming
    pairs = list(zip(cos[iu], -ham[iu]))
    n = len(pairs)
    concordant = discordant = 0
    for k in range(n):
        for m in range(k + 1, n):
            d = (pairs[k][0] - pairs[m][0]) * (pairs[k][1] - pairs[m][1])
            concordant += d > 0
            discordant += d < 0
    tau = (concordant - discordant) / (n * (n - 1) / 2)
    null_sd = math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))  # tau's sd when the two orders are unrelated
    assert tau > 6 * null_sd, (tau, null_sd)


def test_dimensions_with_every_encoding(mini):
    full = _matrix(_embed(mini), np.float64)
    body = _embed(mini, dimensions=100)
    assert body["dim"] == 100 and len(body["warnings"]) == 1 and "nested_dims" in body["warnings"][0]
    short = _matrix(body, np.float64)
    np.testing.assert_allclose(short, full[:, :100] / np.linalg.norm(full[:, :100], axis=1, keepdims=True), atol=1e-6)
    assert _matrix(_embed(mini, dimensions=100, encoding="int8"), np.int64).shape == (len(TEXTS), 100)
    assert _matrix(_embed(mini, dimensions=100, encoding="ubinary"), np.int64).shape == (len(TEXTS), 13)  # ceil(100/8), last byte zero-padded
    raw = base64.b64decode(_embed(mini, dimensions=100, encoding="base64")["data"][0]["embedding"])
    np.testing.assert_allclose(np.frombuffer(raw, "<f4"), short[0], atol=1e-6)
    assert _embed(mini, dimensions=full.shape[1])["warnings"] == []
    assert_error(mini.post("/v1/embed", json={"texts": ["a"], "dimensions": full.shape[1] + 1}), 422, "invalid_request", "dimensions")
    assert_error(mini.post("/v1/embed", json={"texts": ["a"], "encoding": "int4"}), 422, "invalid_request")
    form = mini.post("/v1/embed", files=[("texts", (None, TEXTS[0])), ("encoding", (None, "uint8")), ("dimensions", (None, "100"))])
    assert form.status_code == 200, form.text
    assert form.json()["data"][0]["embedding"] == _embed(mini, dimensions=100, encoding="uint8")["data"][0]["embedding"]
    for bad in ("²", "-3", "1e2"):  # a unicode digit int() cannot read is a 422, not a 500
        r = mini.post("/v1/embed", files=[("texts", (None, "a")), ("dimensions", (None, bad))])
        assert_error(r, 422, "invalid_request", "dimensions")


def test_openai_route_takes_the_compact_encodings(mini):
    model = mini.get("/v1/models").json()["data"][0]["name"]
    for fmt in ("int8", "ubinary"):
        r = mini.post("/v1/embeddings", json={"model": model, "input": TEXTS[:3], "encoding_format": fmt, "dimensions": 64})
        assert r.status_code == 200, r.text
        expected = _embed(mini, dimensions=64, encoding=fmt)["data"][:3]
        assert [d["embedding"] for d in r.json()["data"]] == [d["embedding"] for d in expected]
    r = mini.post("/v1/embeddings", json={"model": model, "input": "x", "encoding_format": "int4"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "encoding_format"
