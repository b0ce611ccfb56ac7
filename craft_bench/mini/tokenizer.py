"""The real OpenAI CLIP BPE tokenizer, rebuilt offline from the vocabulary file open_clip ships.

The OpenAI CLIP vocabulary is the 256 byte-to-unicode symbols, the same symbols with ``</w>``, one token
per merge rule (lines 1..48894 of ``bpe_simple_vocab_16e6.txt.gz``), then ``<|startoftext|>`` and
``<|endoftext|>``: 49408 ids. Written as ``vocab.json`` + ``merges.txt`` it loads with
``CLIPTokenizer.from_pretrained``, so the mini model's tokenizers are the ones SDXL uses.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

VOCAB_SIZE = 49408
MAX_LENGTH = 77
N_MERGES = VOCAB_SIZE - 256 - 256 - 2  # 48894
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bpe_file() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


def write_vocab_files(out_dir: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of the OpenAI CLIP BPE into ``out_dir``."""
    from open_clip.tokenizer import bytes_to_unicode

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_bpe_file(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + N_MERGES]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise RuntimeError(f"{_bpe_file()} does not hold the CLIP vocabulary ({len(tokens)} tokens)")
    (out / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8"
    )
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return out


def build_tokenizers(work_dir: str | Path) -> tuple[Any, Any]:
    """SDXL's two tokenizers: CLIP's (padded with ``<|endoftext|>``) and tokenizer_2 (padded with ``!``)."""
    from transformers import CLIPTokenizer

    path = write_vocab_files(work_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(path), model_max_length=MAX_LENGTH)
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(path), model_max_length=MAX_LENGTH, pad_token="!")
    return tokenizer, tokenizer_2
