"""Fitting the concept head (``captioner.concepts.ConceptHead``) on Flickr8k train photos.

Targets: a scene noun is a photo's concept when at least ``MIN_CAPTIONS`` of its five human
captions say it. Words with fewer than ``MIN_PHOTOS`` such photos are not scored. The logistic
outputs are fitted (full batch, AdamW, on standardised features; the standardisation is folded
into the weights) on a deterministic 80 % of the training photos; each word's threshold is then
set on the other 20 %: the probability with the best F0.5 among those at which the photos above it
had the word at least ``concepts.MIN_PRECISION`` of the time (inf when none does), so a word's bar is measured
on photos the fit did not see. Takes seconds on 2 cores.

Kinds (person, animal, vehicle): a photo shows a kind when at least ``MIN_CAPTIONS`` captions name
one of its COCO classes. Their outputs are fitted on all the training photos, but their bars only
on the photos where they would be used, those on which the detector named nothing (no class
passes the evidence bar and no kind reaches its floor): out-of-fold probabilities (``KIND_FOLDS``
fits, each photo scored by the fit that did not see it), and the lowest bar at which the photos
above it showed the kind at least ``MIN_KIND_PRECISION`` of the time, over >= ``MIN_KIND_SAID``
photos (the detector's kind floors use the same two numbers).

Ranked words: every content word of the vocabulary (not a function, colour or person word), by
WordNet lemma ("jumps", "jumping" -> "jump"), that at least ``MIN_PHOTOS`` training photos have in
``MIN_CAPTIONS`` of their captions. Fitted on all the training photos after an 80/20 check whose
held-out AUC per lemma goes in the report; they rank a still picture's hypotheses and license
nothing (threshold inf).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

import numpy as np
import torch

from ..coco import CLASS_INDEX, KIND_CLASSES
from ..colours import COLOUR_WORDS
from ..concepts import MIN_PRECISION, ConceptHead
from ..grounding.words import FUNCTION_WORDS
from .evidence import lowest_sure_bar, mentioned_classes

log = logging.getLogger(__name__)

MIN_CAPTIONS = 2
MIN_PHOTOS = 20
MIN_SAID = 3  # a threshold needs at least this many held-out photos above it
EPOCHS = 400
KIND_FOLDS = 5
KIND_BARS = np.round(np.arange(0.30, 0.995, 0.01), 2)  # the kind bars tried, lowest first
NOT_RANKED = frozenset(FUNCTION_WORDS) | frozenset(COLOUR_WORDS) | {"person", "people", "view"}  # colours: the pixels' rule


def _held_out(name: str) -> bool:
    return hashlib.sha1(f"concepts-v1:{name}".encode()).digest()[0] < 256 * 0.2


def concept_features(embedding: np.ndarray, cells: np.ndarray | None, cell_dim: int) -> np.ndarray:
    cell = np.zeros(cell_dim, np.float32) if cells is None else np.asarray(cells, np.float32).mean(axis=0)
    return np.concatenate([np.asarray(embedding, np.float32), cell])


def concept_targets(captions: Sequence[Sequence[Sequence[str]]], words: Sequence[str]) -> np.ndarray:
    """(N, K) 0/1: photo n has word k in at least ``MIN_CAPTIONS`` of its captions, used as a noun
    (``lexicon.mentioned_objects``: "a fruit stand", "in the park", not "people stand", "they park")."""
    from .lexicon import mentioned_objects

    index = {w: k for k, w in enumerate(words)}
    out = np.zeros((len(captions), len(words)), np.float32)
    for n, photo in enumerate(captions):
        said = np.zeros(len(words))
        for caption in photo:
            nouns = {caption[m.token_index] for m in mentioned_objects(caption)}
            for w in nouns & index.keys():
                said[index[w]] += 1
        out[n] = said >= MIN_CAPTIONS
    return out


def kind_targets(captions: Sequence[Sequence[Sequence[str]]]) -> np.ndarray:
    """(N, J) 0/1 over ``KIND_CLASSES``: at least ``MIN_CAPTIONS`` captions of photo n name one of the kind's classes."""
    members = [{CLASS_INDEX[c] for c in names} for names in KIND_CLASSES.values()]
    out = np.zeros((len(captions), len(members)), np.float32)
    for n, photo in enumerate(captions):
        said = [mentioned_classes([caption]) for caption in photo]
        out[n] = [sum(bool(s & m) for s in said) >= MIN_CAPTIONS for m in members]
    return out


def _fit_linear(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Logistic outputs on standardised features, folded back: (weight (K, D), bias (K,), final loss)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    torch.manual_seed(seed)
    linear = torch.nn.Linear(x.shape[1], y.shape[1])
    optimizer = torch.optim.AdamW(linear.parameters(), lr=1e-2, weight_decay=1e-2)
    fit_x, fit_y = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    for _ in range(EPOCHS):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(fit_x), fit_y)
        loss.backward()
        optimizer.step()
    weight = linear.weight.detach().numpy() / std  # folded: w' x = w (x - mean) / std - ...
    return weight, linear.bias.detach().numpy() - weight @ mean, float(loss.detach())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def fit_kinds(names: Sequence[str], x: np.ndarray, captions, unnamed: np.ndarray,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Kind outputs over features ``x`` (N, D): (weight (J, D), bias (J,), threshold (J,), report),
    the bars calibrated out of fold on the ``unnamed`` photos (see the module's docstring)."""
    y = kind_targets(captions)
    fold = np.array([hashlib.sha1(f"kinds-v1:{n}".encode()).digest()[0] % KIND_FOLDS for n in names])
    oof = np.zeros_like(y)
    for k in range(KIND_FOLDS):
        held = fold == k
        weight, bias, _ = _fit_linear(x[~held], y[~held], seed)
        oof[held] = _sigmoid(x[held] @ weight.T + bias)
    weight, bias, _ = _fit_linear(x, y, seed)
    thresholds, report = [], {"photos_fit": len(names), "photos_calibrate": int(unnamed.sum()), "per_kind": {}}
    for j, kind in enumerate(KIND_CLASSES):
        p, truth = oof[unnamed, j], y[unnamed, j].astype(bool)
        entry = {"train_photos": int(y[:, j].sum()), "calibration_photos_showing_it": int(truth.sum())}
        bar, sure = lowest_sure_bar(p, truth, KIND_BARS)
        if sure:
            entry.update({"threshold": bar, **sure})
        thresholds.append(bar)
        report["per_kind"][kind] = entry
    log.info("concept head kinds (bars on %d photos the detector named nothing on): %s", int(unnamed.sum()), report["per_kind"])
    return weight.astype(np.float32), bias.astype(np.float32), np.array(thresholds, np.float32), report


def lemma_forms(vocabulary: Sequence[str]) -> dict[str, list[str]]:
    """Lemma -> the vocabulary's content words of it (WordNet: a verb reading first, then a noun)."""
    from nltk.stem import WordNetLemmatizer

    from .lexicon import _load_wordnet

    _load_wordnet()  # NLTK_DATA honoured, a clear error without WordNet
    lemmatizer = WordNetLemmatizer()
    forms: dict[str, list[str]] = {}
    for word in vocabulary:
        if word in NOT_RANKED or not word.isalpha() or len(word) < 3:
            continue
        lemma = lemmatizer.lemmatize(word, "v")
        forms.setdefault(lemma if lemma != word else lemmatizer.lemmatize(word, "n"), []).append(word)
    return forms


def lemma_targets(captions: Sequence[Sequence[Sequence[str]]], forms: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    """(the lemmas, sorted; (N, R) 0/1: photo n has one of the lemma's words in at least ``MIN_CAPTIONS`` captions)."""
    lemmas = sorted(forms)
    index = {form: k for k, lemma in enumerate(lemmas) for form in forms[lemma]}
    out = np.zeros((len(captions), len(lemmas)), np.float32)
    for n, photo in enumerate(captions):
        said = np.zeros(len(lemmas))
        for caption in photo:
            said[sorted({index[t] for t in caption if t in index})] += 1
        out[n] = said >= MIN_CAPTIONS
    return lemmas, out


def fit_ranked(names: Sequence[str], x: np.ndarray, captions, forms: dict[str, list[str]],
               seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """The ranked lemmas of ``forms`` with enough photos: (lemmas, weight (R, D), bias (R,), report
    with the held-out AUC of an 80 % fit)."""
    from .eval import auroc

    lemmas, y = lemma_targets(captions, forms)
    keep = y.sum(axis=0) >= MIN_PHOTOS
    lemmas, y = [w for w, k in zip(lemmas, keep) if k], y[:, keep]
    held = np.array([_held_out(n) for n in names])
    weight, bias, _ = _fit_linear(x[~held], y[~held], seed)
    probs = _sigmoid(x[held] @ weight.T + bias)
    aucs = {w: auroc(probs[:, k], y[held, k]) for k, w in enumerate(lemmas) if 0 < y[held, k].sum() < held.sum()}
    weight, bias, loss = _fit_linear(x, y, seed)
    report = {"lemmas": len(lemmas), "photos_fit": len(names), "final_loss": round(loss, 4),
              "held_out_auc_median": round(float(np.median(list(aucs.values()))), 3) if aucs else None,
              "held_out_auc": {w: round(a, 3) for w, a in aucs.items()}}
    log.info("concept head: %d ranked lemmas, held-out AUC median %s", len(lemmas), report["held_out_auc_median"])
    return lemmas, weight.astype(np.float32), bias.astype(np.float32), report


def _threshold(probs: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(threshold, precision, recall) on held-out photos: the threshold with the best F0.5 (precision
    counts twice: a wrong scene word is worse than a missing one) among those whose photos above it
    had the word at least ``MIN_PRECISION`` of the time; inf when none does."""
    if truth.sum() == 0:
        return float("inf"), float("nan"), 0.0
    order = np.argsort(-probs)
    hits = np.cumsum(truth[order])
    said = np.arange(1, len(order) + 1)
    precision, recall = hits / said, hits / truth.sum()
    f_half = 1.25 * precision * recall / np.maximum(0.25 * precision + recall, 1e-9)
    f_half[(precision < MIN_PRECISION) | (said < MIN_SAID)] = -1.0
    best = int(np.argmax(f_half))
    if f_half[best] < 0:
        return float("inf"), float("nan"), 0.0
    return float(probs[order[best]]), float(precision[best]), float(recall[best])


def fit_concepts(names: Sequence[str], embeddings: np.ndarray, cells: Sequence[np.ndarray | None],
                 captions: Sequence[Sequence[Sequence[str]]], scene_nouns: Sequence[str], cell_dim: int,
                 imgsz: int, seed: int = 0, unnamed: np.ndarray | None = None,
                 vocabulary: Sequence[str] | None = None) -> ConceptHead | None:
    """The head for the photos given (name, embedding (E,), grid cells (G, C), tokenised captions);
    with ``unnamed`` (N,) bool, the photos on which the detector named nothing, it scores kinds too;
    with the decoder's ``vocabulary``, its ranked lemmas too."""
    x = np.stack([concept_features(e, c, cell_dim) for e, c in zip(embeddings, cells)])
    counts = concept_targets(captions, scene_nouns).sum(axis=0)
    words = [w for w, n in zip(scene_nouns, counts) if n >= MIN_PHOTOS]
    if not words:
        log.warning("concept head: no scene noun has %d training photos; none fitted", MIN_PHOTOS)
        return None
    y = concept_targets(captions, words)
    held = np.array([_held_out(n) for n in names])
    weight, bias, loss = _fit_linear(x[~held], y[~held], seed)
    probs = _sigmoid(x[held] @ weight.T + bias)
    thresholds, per_word = [], {}
    for k, word in enumerate(words):
        t, precision, recall = _threshold(probs[:, k], y[held, k])
        thresholds.append(t)
        per_word[word] = {"train_photos": int(y[~held, k].sum()), "threshold": round(t, 3),
                          "held_out_precision": round(precision, 3), "held_out_recall": round(recall, 3)}
    report = {"photos_fit": int((~held).sum()), "photos_calibrate": int(held.sum()), "words": len(words),
              "words_with_a_bar": int(np.isfinite(thresholds).sum()), "final_loss": round(loss, 4),
              "per_word": per_word}
    log.info("concept head: %d words, %d with a bar", len(words), report["words_with_a_bar"])
    head = ConceptHead(words, weight.astype(np.float32), bias.astype(np.float32), np.array(thresholds, np.float32), imgsz,
                       report)
    if unnamed is not None and np.asarray(unnamed).any():
        kind_weight, kind_bias, kind_bars, report["kinds"] = fit_kinds(names, x, captions, np.asarray(unnamed, bool), seed)
        head.kinds = list(KIND_CLASSES)
        head.weight = np.concatenate([head.weight, kind_weight])
        head.bias = np.concatenate([head.bias, kind_bias])
        head.threshold = np.concatenate([head.threshold, kind_bars])
    if vocabulary is not None:  # their rows follow the kinds'
        forms = lemma_forms(vocabulary)
        lemmas, ranked_weight, ranked_bias, report["ranked"] = fit_ranked(names, x, captions, forms, seed)
        head.ranked, head.ranked_forms = lemmas, [forms[w] for w in lemmas]
        head.weight = np.concatenate([head.weight, ranked_weight])
        head.bias = np.concatenate([head.bias, ranked_bias])
        head.threshold = np.concatenate([head.threshold, np.full(len(lemmas), np.inf, np.float32)])
    return head
