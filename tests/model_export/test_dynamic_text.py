"""Text towers with a dynamic sequence axis: any length up to the context gives the PyTorch
model's embedding at the fixed context (cos >= 0.99999), alone, in mixed batches, and regrouped
by length the way the batcher does; for a CLIP causal tower and a Hugging Face encoder (MiniLM)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from omnivec.model_export.parity import cosine_rows
from omnivec.server.bundle import ModelBundle
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.inference.sequences import run_grouped, take
from omnivec.server.preprocess.text import TextPreprocessor

MIN_COS = 0.99999  # the export gate; fp32 graphs of the same ops differ only by summation order
TEXTS = [
    "x",  # one word: one token between the special tokens
    "dog",
    "a photo of a dog",
    "a red circle on a white background",
    "two cats asleep on a sunny windowsill next to a potted plant",
    "what is the capital of france and how many people live there today",
    "café naïve résumé — “quoted” text",
    " ".join(["a very long caption that fills the whole context"] * 12),  # truncated at the context
]


@pytest.fixture(params=["clip-causal", "hf-encoder"])
def tower(request, tiny_loaded, tiny_bundle, mini_loaded, mini_text_bundle):
    loaded, root = (tiny_loaded, tiny_bundle) if request.param == "clip-causal" else (mini_loaded, mini_text_bundle)
    bundle = ModelBundle.load(root)
    spec = bundle.manifest.towers["text"]
    pre = TextPreprocessor(root, spec.preprocess, [i.name for i in spec.inputs], max_chars=10**6, dynamic=bundle.dynamic_sequence("text"))
    encoder = OnnxEncoder(bundle.tower_path("text"), "text", intra_op_threads=1)
    yield loaded, bundle, pre, encoder
    encoder.close()


def _torch(loaded, texts) -> np.ndarray:
    import torch

    with torch.no_grad():
        return loaded.model.encode_text(loaded.tokenizer(texts)).numpy()  # padded to the full context


def test_graph_and_manifest_have_a_sequence_axis(tower):
    _, bundle, _, encoder = tower
    for spec, graph_input in zip(bundle.manifest.towers["text"].inputs, encoder.session.get_inputs()):
        assert spec.shape == ["batch", "sequence"] and graph_input.shape == ["batch", "sequence"]


def test_every_length_alone_mixed_and_grouped_matches_pytorch(tower):
    loaded, bundle, pre, encoder = tower
    context = bundle.manifest.towers["text"].preprocess.context_length
    reference = _torch(loaded, TEXTS)
    batch = pre(TEXTS)
    lengths = np.asarray(batch.token_counts)
    assert lengths.min() <= 3 and ((lengths >= 5) & (lengths <= 20)).sum() >= 3 and lengths.max() == context
    assert batch.truncated == [False] * (len(TEXTS) - 1) + [True]
    runs = {
        "mixed batch, padded to the longest": encoder.encode(batch.arrays),
        "each alone at its own length": np.concatenate([encoder.encode(take(batch.arrays, np.array([i]), n)) for i, n in enumerate(lengths)]),
        "regrouped by length": run_grouped(encoder.encode, batch.arrays, lengths),
    }
    short = pre(TEXTS[:4])  # a batch of short texts only: padded to its own longest, far below the context
    assert short.arrays["input_ids"].shape[1] == max(short.token_counts) < context
    runs["short-only batch"] = np.concatenate([encoder.encode(short.arrays), runs["mixed batch, padded to the longest"][4:]])
    for name, got in runs.items():
        cos = cosine_rows(reference, got)
        assert cos.min() >= MIN_COS, f"{name}: cos_min {cos.min():.7f} (per text {np.round(cos, 7).tolist()})"


def test_a_single_token_sequence(tower):
    """The shortest input the graph accepts: one position (the start token alone)."""
    import torch

    loaded, _, pre, encoder = tower
    ids = pre(["x"]).arrays["input_ids"][:, :1]
    feed = {name: (ids if name == "input_ids" else np.ones_like(ids)) for name in encoder.input_names}
    got = encoder.encode(feed)
    padded = torch.from_numpy(np.pad(ids, ((0, 0), (0, loaded.tokenizer(["x"]).shape[1] - 1)), constant_values=pre.pad_id))
    with torch.no_grad():
        reference = loaded.model.encode_text(padded).numpy()
    assert cosine_rows(reference, got).min() >= MIN_COS


def test_parity_report_covers_the_three_ways(tower):
    _, bundle, _, _ = tower
    fp32 = bundle.parity_report()["text"]["fp32"]
    assert fp32["runs"] == 3 and fp32["cos_min"] >= MIN_COS


def test_fixed_context_towers_keep_their_length():
    """A tower where trimming would not be exact (last-token pooling) is exported fixed-length."""
    import torch

    from omnivec.model_export.onnx_export import text_tower_module

    class LastPooled(torch.nn.Module):
        token_embedding = torch.nn.Embedding(10, 4)
        transformer = torch.nn.Identity()
        attn_mask = torch.zeros(3, 3)
        text_pool_type = "last"

        def encode_text(self, ids):
            return self.token_embedding(ids)[:, -1]

    _, graph = text_tower_module(LastPooled())
    assert graph.dynamic_sequence is False and graph.input_names == ["input_ids"]
