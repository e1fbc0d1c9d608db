"""The bundle's tokenizer reproduces open_clip's SimpleTokenizer exactly, cleaning and truncation included."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec.server.bundle import TextPreprocess
from omnivec.server.preprocess.text import TextPreprocessor

CORPUS = [
    "a photo of a cat",
    "Hello, World!! How's it going?",
    "café naïve résumé façade",
    "日本語のテキストです。中文文本。한국어",
    "emoji 🐶🐱🎉 and ZWJ 👩‍👩‍👧",
    "&amp;lt;b&amp;gt;double-escaped&amp;lt;/b&amp;gt; &quot;quotes&quot; &#39;apos&#39;",
    "it's we're they'll I'd you've I'm",
    "IT'S LOUD AND CLEAR",
    "numbers 12345 3.14159 1,000,000",
    "  lots   of\twhitespace\n\nand newlines  ",
    "mojibake: Ã©tÃ© and â€œsmart quotesâ€\x9d",
    "Ελληνικά κείμενο και русский текст",
    "em—dash en–dash … ellipsis",
    "\u200bzero\u200bwidth\u00a0nbsp",
    "İstanbul ǅemal ß straße",
    "x" * 600,
    " ".join(["repeated words"] * 60),
    "a" + "!" * 100,
    "",
    "   ",
    "<start_of_text> literal special tokens <end_of_text>",
    "tab\tseparated\tvalues\r\nwindows newline",
    "مرحبا بالعالم",
    "हिन्दी पाठ",
]


@pytest.fixture(scope="module")
def preprocessor(tiny_bundle, tiny_loaded):
    from omnivec.server.bundle import ModelBundle

    bundle = ModelBundle.load(tiny_bundle)
    spec = bundle.manifest.towers["text"].preprocess
    assert isinstance(spec, TextPreprocess) and spec.tokenizer == "clip-bpe" and spec.cleaning == "lower"
    return TextPreprocessor(bundle.root, spec, ["input_ids"], max_chars=10**6)


def test_token_ids_equal_open_clip(preprocessor, tiny_loaded):
    ours = preprocessor(CORPUS).arrays["input_ids"]
    reference = tiny_loaded.tokenizer(CORPUS).numpy()
    mismatched = [CORPUS[i][:40] for i in range(len(CORPUS)) if not np.array_equal(ours[i], reference[i])]
    assert not mismatched, f"token ids differ for: {mismatched}"


def test_truncation_rule_and_flags(preprocessor):
    batch = preprocessor(["short text", "word " * 200])
    ids = batch.arrays["input_ids"]
    assert batch.truncated == [False, True]
    assert ids.shape == (2, 77)
    assert ids[1, -1] == 49407, "a truncated sequence must end with <end_of_text>"
    assert ids[0, 0] == 49406 and 49407 in ids[0] and ids[0, -1] == 0, "short text: sot ... eot then zero padding"
    assert batch.token_counts[1] == 77


def test_no_truncation_is_refused(preprocessor):
    from omnivec.server.errors import ErrorCode, OmnivecError

    with pytest.raises(OmnivecError) as info:
        preprocessor(["ok", "word " * 200], truncate=False)
    assert info.value.code == ErrorCode.TEXT_TOO_LONG and "texts[1]" in info.value.message
