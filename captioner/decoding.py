"""Stage 7: greedy and beam search over the caption decoder, and nothing else.

What the search may say of a window comes from ``grounding``: a banned-word mask and a bias
(``grounding.search_odds``, applied to the logits at every step), a ``blocks(ids, word)`` rule
(``grounding.no_repeats``) and a ranking of the finished hypotheses
(``grounding.SalientCoverage``). Rules on finished sentences are checked afterwards, by
``grounding.true_sentence``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .vocab import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    ids: list[int]  # generated words, without <bos>/<eos>
    logprob: float
    score: float = 0.0
    named: set[int] = field(default_factory=set)  # COCO classes it names (set by the ranker)

    @property
    def confidence(self) -> float:
        """Geometric-mean word probability, in [0, 1]."""
        return math.exp(self.logprob / max(len(self.ids) + 1, 1))


def by_normalised_logprob(hypotheses: list[Hypothesis], length_alpha: float = 0.7) -> list[Hypothesis]:
    """The default ranking: length-normalised log-probability, best first."""
    for hyp in hypotheses:
        hyp.score = hyp.logprob / (len(hyp.ids) + 1) ** length_alpha
    return sorted(hypotheses, key=lambda x: -x.score)


@torch.no_grad()
def beam_search(
    decoder,
    memory: torch.Tensor,
    mask: torch.Tensor,
    memory_proj: torch.Tensor,
    style: int,
    *,
    banned: torch.Tensor,
    bias: torch.Tensor | None = None,
    blocks: Callable[[list[int], int], bool] | None = None,
    rank: Callable[[list[Hypothesis]], list[Hypothesis]] = by_normalised_logprob,
    beam_size: int = 4,
    max_len: int = 20,
) -> list[Hypothesis]:
    """Decode one segment (memory (1, M, H)); returns finished hypotheses, best first by ``rank``.
    ``beam_size=1`` is greedy search. ``banned`` (V,) bool: words never generated; ``bias`` (V,):
    nats added to the logits; ``blocks(ids, word)``: True where ``word`` may not follow ``ids``."""
    h, c = decoder.init_state(memory, mask, torch.tensor([style]))
    beams = [(Hypothesis([], 0.0), h, c)]
    finished: list[Hypothesis] = []
    eos, bos = EOS_ID, BOS_ID
    for step in range(max_len):
        k = len(beams)
        words = torch.tensor([b[0].ids[-1] if b[0].ids else bos for b in beams])
        hs, cs = torch.cat([b[1] for b in beams]), torch.cat([b[2] for b in beams])
        logits, hs, cs, _ = decoder.step(words, hs, cs, memory.expand(k, -1, -1), memory_proj.expand(k, -1, -1),
                                         mask.expand(k, -1))
        if bias is not None:
            logits = logits + bias
        logp = torch.log_softmax(logits.masked_fill(banned, -1e9), dim=-1)
        if step == 0:
            logp[:, eos] = -1e9  # no empty captions
        candidates = []
        for b, (hyp, _, _) in enumerate(beams):
            top = torch.topk(logp[b], beam_size * 2 + 2)
            for lp, word in zip(top.values.tolist(), top.indices.tolist()):
                if lp < -1e8 or (word != eos and blocks is not None and blocks(hyp.ids, word)):
                    continue
                candidates.append((hyp.logprob + lp, b, word))
        candidates.sort(key=lambda x: -x[0])
        next_beams = []
        for total, b, word in candidates:
            hyp = beams[b][0]
            if word == eos:
                finished.append(Hypothesis(hyp.ids, total))
            else:
                next_beams.append((Hypothesis(hyp.ids + [word], total), hs[b:b + 1], cs[b:b + 1]))
            if len(next_beams) >= beam_size:
                break
        beams = next_beams
        if not beams or len(finished) >= beam_size * 2:
            break
    if not finished:  # ran out of length: keep the best unfinished
        finished = [b[0] for b in beams]
    return rank(finished)
