"""Caption tokens and the word <-> id vocabulary of the caption decoder.

``tokenize`` is a pure regular expression (NLTK's ``RegexpTokenizer``), so it needs no
downloaded NLTK data: training and inference tokenise the same way on any machine. It
lower-cases, drops punctuation, and splits English clitics the Penn Treebank way
(``"man's" -> ["man", "'s"]``, ``"don't" -> ["do", "n't"]``) so that possessives do not
multiply the vocabulary; ``Vocabulary.decode`` glues them back (``"man's"``).

``Vocabulary.to_dict`` holds only str / int / list / dict so it can live inside a torch
checkpoint loaded with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from nltk.tokenize import RegexpTokenizer

from .errors import CaptionerError

log = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
VOCAB_FORMAT = 1

# Clitics are split off the word before them and glued back on decode.
CLITICS = frozenset({"n't", "'s", "'re", "'ve", "'ll", "'m", "'d"})

# Alternatives are tried left to right at each position:
#  1. a word directly followed by n't ("do" of "don't"; "ca" of "can't", as the PTB does)
#  2. the clitics themselves
#  3. "o'clock" and digit groups ("1,000"), which would otherwise fall apart
#  4. a word: letters/digits, with inner hyphens or dots ("t-shirt", "3.5", "u.s"); an
#     apostrophe is not a joiner, so "man's" -> "man" + "'s" and stray quotes vanish.
_TOKEN_PATTERN = (
    r"[^\W_]+(?=n't\b)|n't\b|'(?:s|re|ve|ll|m|d)\b"
    r"|o'clock\b|\d{1,3}(?:,\d{3})+(?:\.\d+)?\b"
    r"|[^\W_]+(?:[-.][^\W_]+)*"
)
_TOKENIZER = RegexpTokenizer(_TOKEN_PATTERN)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})


def tokenize(sentence: str) -> list[str]:
    """Lower-cased word tokens of one caption sentence, punctuation dropped.

    >>> tokenize("A man's dog doesn't run, it walks.")
    ['a', 'man', "'s", 'dog', 'does', "n't", 'run', 'it', 'walks']
    """
    text = unicodedata.normalize("NFKC", sentence).translate(_QUOTES).lower()
    return _TOKENIZER.tokenize(text)


def detokenize(tokens: Iterable[str]) -> str:
    """Join tokens with spaces, gluing clitics to the word before (``do n't`` -> ``don't``)."""
    out: list[str] = []
    for tok in tokens:
        if out and tok in CLITICS:
            out[-1] += tok
        else:
            out.append(tok)
    return " ".join(out)


@dataclass
class Vocabulary:
    """Word <-> id map. Ids 0..3 are ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.

    ``counts[i]`` is how often token ``i`` was seen when the vocabulary was built (0 for the
    specials); it is kept for the model card and costs little.
    """

    itos: list[str] = field(default_factory=lambda: list(SPECIALS))
    counts: list[int] = field(default_factory=lambda: [0] * len(SPECIALS))

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise CaptionerError(f"vocabulary must start with {SPECIALS}, got {self.itos[:4]}")
        if len(self.counts) != len(self.itos):
            raise CaptionerError(f"vocabulary has {len(self.itos)} tokens but {len(self.counts)} counts")
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dupes = [t for t, n in Counter(self.itos).items() if n > 1]
            raise CaptionerError(f"vocabulary has duplicate tokens: {dupes[:10]}")

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_count: int = 2, max_size: int | None = None
    ) -> "Vocabulary":
        """Count tokens; keep those seen ``min_count`` times or more, most frequent first.

        ``max_size`` bounds the whole vocabulary, specials included. Ties are broken
        alphabetically so the same corpus always gives the same ids.
        """
        if min_count < 1:
            raise CaptionerError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < len(SPECIALS):
            raise CaptionerError(f"max_size must be >= {len(SPECIALS)} (the specials), got {max_size}")
        counter: Counter[str] = Counter()
        for tokens in token_lists:
            counter.update(tokens)
        for special in SPECIALS:
            counter.pop(special, None)  # a corpus must not be able to redefine the specials
        ranked = sorted((t for t, n in counter.items() if n >= min_count), key=lambda t: (-counter[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        vocab = cls(list(SPECIALS) + ranked, [0] * len(SPECIALS) + [counter[t] for t in ranked])
        seen = sum(counter.values())
        covered = sum(counter[t] for t in ranked)
        log.info("vocabulary: %d tokens (min_count=%d), covering %.1f%% of %d running tokens",
                 len(vocab), min_count, 100.0 * covered / max(seen, 1), seen)
        return vocab

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def token_to_id(self, token: str) -> int:
        return self.stoi.get(token, UNK_ID)

    def id_to_token(self, idx: int) -> str:
        if not 0 <= idx < len(self.itos):
            raise CaptionerError(f"token id {idx} is outside the vocabulary (size {len(self.itos)})")
        return self.itos[idx]

    def encode(self, tokens: Sequence[str], add_bos_eos: bool = True) -> list[int]:
        """Token ids; unknown tokens become ``<unk>``."""
        ids = [self.stoi.get(t, UNK_ID) for t in tokens]
        return [BOS_ID, *ids, EOS_ID] if add_bos_eos else ids

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``<eos>``, specials (``<unk>`` included) left out."""
        out: list[str] = []
        for idx in ids:
            idx = int(idx)  # accept numpy / torch integer scalars
            if idx == EOS_ID:
                break
            if idx < len(SPECIALS):
                continue
            out.append(self.id_to_token(idx))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """The caption text for ``ids``: stops at ``<eos>``, skips specials, glues clitics."""
        return detokenize(self.decode_tokens(ids))

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON / ``torch.load(weights_only=True)``-safe form."""
        return {"format": VOCAB_FORMAT, "itos": list(self.itos), "counts": [int(c) for c in self.counts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise CaptionerError("vocabulary data must be a dict with an 'itos' list (from Vocabulary.to_dict)")
        if data.get("format", VOCAB_FORMAT) != VOCAB_FORMAT:
            raise CaptionerError(f"vocabulary format {data.get('format')} is not supported "
                                 f"(this version reads format {VOCAB_FORMAT}); retrain or upgrade captioner")
        itos = [str(t) for t in data["itos"]]
        counts = [int(c) for c in data.get("counts") or [0] * len(itos)]
        return cls(itos, counts)
