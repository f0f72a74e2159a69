"""Tiny tokenizers for scorers built with random weights (tests, smoke runs); no download needed.

They are real transformers tokenizers (CLIP byte-level BPE, BERT WordPiece) over a small vocabulary,
so the scorers' text path runs exactly as with the published vocabularies.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2, CLIP), in the reference's
    order (printable bytes first): vocabularies list the symbols in this order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clip_bpe_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary order: 256 byte symbols, the same with ``</w>``, one entry per merge, then
    start/end of text (as open_clip's ``SimpleTokenizer`` and transformers' CLIP files build it)."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def write_clip_tokenizer(directory: Path, merges: list[tuple[str, str]] | None = None) -> Path:
    merges = merges or []
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(clip_bpe_vocab(merges)), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                          encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }), encoding="utf-8")
    return directory


def tiny_clip_tokenizer(merges: list[tuple[str, str]] | None = None):
    """A CLIP tokenizer whose vocabulary is the 512 byte symbols plus ``merges`` (none by default)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(str(write_clip_tokenizer(Path(tmp), merges)))


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert_tokenizer(words: list[str] | None = None):
    """An uncased WordPiece tokenizer over ASCII letters, digits, punctuation and ``words``, with
    BLIP's two extra special tokens ([DEC] as bos, [ENC]) as ImageReward's ``init_tokenizer`` adds them."""
    from transformers import BertTokenizer

    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    pieces += ["##" + p for p in pieces if p.isalnum()]
    vocab = BERT_SPECIALS + sorted(set(words or [])) + pieces
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer.from_pretrained(tmp, do_lower_case=True)
    add_blip_special_tokens(tokenizer)
    return tokenizer


def add_blip_special_tokens(tokenizer) -> None:
    """BLIP's ``init_tokenizer``: bos [DEC] and one additional special token [ENC]."""
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
