"""The CLIP BPE tokenizer built offline from the vocabulary that ships inside open_clip_torch.

``bpe_simple_vocab_16e6.txt.gz`` holds the 48,894 merges of OpenAI's CLIP tokenizer. The vocabulary
is the 256 byte symbols, the same with the end-of-word marker, one token per merge, and the two
special tokens: 49,408 entries, identical to ``openai/clip-vit-large-patch14``'s tokenizer.
We only locate the file (``find_spec`` does not import open_clip, which needs torchvision).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a tokenizer is built
    from transformers import CLIPTokenizer

N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bpe_vocab_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip_torch is not installed; it ships the CLIP BPE vocabulary")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the open_clip_torch installation")
    return path


def _bytes_to_unicode() -> list[str]:
    """CLIP's reversible byte → printable-unicode table, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return [chr(table[b]) for b in sorted(table, key=lambda b: printable.index(b))]


def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` (the Hugging Face layout) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_vocab_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = _bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return folder


def build_clip_tokenizer(folder: str | Path, model_max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` saved into ``folder`` (loadable later with ``from_pretrained``)."""
    from transformers import CLIPTokenizer

    folder = write_clip_tokenizer_files(folder)
    # from_pretrained reads vocab.json/merges.txt in both transformers 4.x and 5.x
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=model_max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


@lru_cache(maxsize=4)
def cached_clip_tokenizer(cache_dir: str, model_max_length: int = 77) -> CLIPTokenizer:
    return build_clip_tokenizer(cache_dir, model_max_length)
