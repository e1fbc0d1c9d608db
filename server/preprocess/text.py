"""Text -> token ids with the bundle's tokenizer, reproducing open_clip's tokenizer exactly.

Cleaning that `tokenizers` cannot express (ftfy, double HTML unescape) runs here in Python;
byte-level BPE, the special tokens, truncation (the last kept token becomes end-of-text) and
padding live in the bundle's tokenizer.json. A tower with a dynamic sequence axis gets each batch
padded only to its longest text (plus the per-row lengths and pad values the batcher needs to
merge and regroup rows); a fixed-length tower gets every text padded to the full context.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import ftfy
import numpy as np
from tokenizers import Tokenizer

from ..bundle import TextPreprocess
from ..errors import ErrorCode, OmnivecError


def clean_text(text: str, cleaning: str) -> str:
    """open_clip's clean functions: 'lower' = basic_clean + whitespace_clean + lower()."""
    if cleaning == "none":
        return text
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if cleaning == "lower" else text


@dataclass
class TokenizedBatch:
    arrays: dict[str, np.ndarray]
    truncated: list[bool]
    token_counts: list[int]
    padded_to_longest: bool = False  # dynamic-length tower: rows end at token_counts, then padding


class TextPreprocessor:
    """Tokenises batches of text into the tower's named int64 inputs."""

    def __init__(
        self, bundle_root: Path, spec: TextPreprocess, input_names: list[str], *, max_chars: int, dynamic: bool = False
    ) -> None:
        self.spec = spec
        self.input_names = input_names
        self.max_chars = max_chars
        self.dynamic = dynamic
        self.tokenizer = Tokenizer.from_file(str(bundle_root / spec.file))
        # Truncation at the context and the padding mode are part of the contract: enforce them whatever the file says.
        self.tokenizer.enable_truncation(max_length=spec.context_length)
        self.pad_id = int(self.tokenizer.padding["pad_id"]) if self.tokenizer.padding else 0
        pad_token = self.tokenizer.padding["pad_token"] if self.tokenizer.padding else "[PAD]"
        length = None if dynamic else spec.context_length  # None: pad to the batch's longest
        self.tokenizer.enable_padding(length=length, pad_id=self.pad_id, pad_token=pad_token)
        # what fills a position past a text's end, per input (the batcher pads merged rows with it)
        self.pad_values = {name: self.pad_id if name == "input_ids" else 0 for name in input_names}

    def __call__(self, texts: list[str], *, truncate: bool = True, labels: list[str] | None = None) -> TokenizedBatch:
        labels = labels or [f"texts[{i}]" for i in range(len(texts))]
        for i, text in enumerate(texts):
            if len(text) > self.max_chars:
                raise OmnivecError(
                    ErrorCode.TEXT_TOO_LONG,
                    f"{labels[i]} has {len(text)} characters, over the limit of {self.max_chars}; split it into shorter texts",
                )
        cleaned = [clean_text(t, self.spec.cleaning) for t in texts]
        encodings = self.tokenizer.encode_batch(cleaned)
        truncated = [bool(enc.overflowing) for enc in encodings]
        if not truncate:
            over = [i for i, t in enumerate(truncated) if t]
            if over:
                raise OmnivecError(
                    ErrorCode.TEXT_TOO_LONG,
                    f"{labels[over[0]]} is longer than the model's context of {self.spec.context_length} tokens "
                    "and the request set truncate=false; shorten it or allow truncation",
                )
        arrays: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name == "input_ids":
                arrays[name] = np.asarray([e.ids for e in encodings], dtype=np.int64)
            elif name == "attention_mask":
                arrays[name] = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            elif name == "token_type_ids":
                arrays[name] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
            else:
                raise ValueError(f"text tower input {name!r} is not produced by the tokenizer")
        counts = [sum(e.attention_mask) for e in encodings]
        return TokenizedBatch(arrays=arrays, truncated=truncated, token_counts=counts, padded_to_longest=self.dynamic)
