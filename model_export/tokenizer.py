"""Write the bundle's tokenizer as a `tokenizers` JSON the server loads without torch or open_clip.

For CLIP-style text towers the JSON rebuilds open_clip's SimpleTokenizer: its regex split,
byte-level alphabet, BPE merges with the `</w>` end-of-word suffix, start/end-of-text tokens,
truncation to the context length (the last kept token is end-of-text) and zero padding.
Text cleaning (ftfy + HTML unescape + whitespace + lowercase) is recorded in the manifest
and done by `omnivec.server.preprocess.text.clean_text`, since `tokenizers` cannot run ftfy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

# open_clip's SimpleTokenizer pattern, minus the special-token alternatives (added tokens handle those).
CLIP_SPLIT_PATTERN = r"""(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def build_clip_tokenizer(simple_tokenizer: Any, context_length: int) -> Tokenizer:
    """A `tokenizers.Tokenizer` equal to open_clip's SimpleTokenizer on cleaned text."""
    st = simple_tokenizer
    specials = [t for t, _ in sorted(((t, i) for t, i in st.encoder.items() if t.startswith("<") and t.endswith(">") and i >= 49406), key=lambda x: x[1])]
    vocab = dict(st.encoder)
    merges = [pair for pair, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    sot, eot = "<start_of_text>", "<end_of_text>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}", pair=f"{sot} $A {eot} $B {eot}", special_tokens=[(sot, st.encoder[sot]), (eot, st.encoder[eot])]
    )
    tok.enable_truncation(max_length=context_length)
    tok.enable_padding(length=context_length, pad_id=0, pad_token=st.decoder[0])
    return tok


def write_clip_tokenizer(simple_tokenizer: Any, context_length: int, path: Path) -> None:
    build_clip_tokenizer(simple_tokenizer, context_length).save(str(path))


def write_hf_tokenizer(hf_tokenizer: Any, context_length: int, path: Path) -> None:
    """Hugging Face (fast) tokenizers already are `tokenizers` JSON; pin truncation and padding."""
    backend: Tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=context_length)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    backend.enable_padding(length=context_length, pad_id=pad_id, pad_token=hf_tokenizer.pad_token or "[PAD]")
    backend.save(str(path))
