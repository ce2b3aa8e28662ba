"""Save and load the caption model. Loading never unpickles code: ``weights_only=True``.

A checkpoint records the YOLO it was trained with (architecture, feature layers and sizes,
weights sha256). Features from a different architecture or layout mean something else, so
such a backbone is refused; another checkpoint of the same architecture (e.g. the official
``yolo11n.pt``) is accepted with a one-line notice.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .grounding.evidence import EvidenceBar, Grounding
from .grounding.verbs import VerbEvidence
from .concepts import ConceptHead
from .errors import ModelError
from .fileio import atomic_output, file_sha256
from .model import CaptionModel, ModelConfig
from .model_files import resolve_checkpoint
from .perception import BackboneInfo
from .video import DEFAULT_ANALYSIS_FPS
from .vocab import Vocabulary

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


@dataclass
class TrainedModel:
    """A loaded caption model and everything needed to use it."""

    network: CaptionModel  # the LSTM encoder, next-event head and caption decoder
    vocab: Vocabulary
    grounding: Grounding
    backbone: dict  # BackboneInfo.layout() + weights_name + weights_sha256
    training: dict  # how it was trained (data sizes, steps, seed, time)
    analysis_fps: float  # the frame rate it was trained on, and so the only one it reads
    evidence: EvidenceBar = field(default_factory=EvidenceBar)  # when a detected class may be named
    verbs: VerbEvidence = field(default_factory=VerbEvidence)  # when motion supports or contradicts a verb
    concepts: ConceptHead | None = None  # which scene words the pixels support (None: older checkpoints)
    path: str = ""
    sha256: str = ""


def save_checkpoint(path: str | os.PathLike, model: CaptionModel, vocab: Vocabulary, word_class: dict[str, str],
                    unseeable: list[str], backbone: BackboneInfo, training: dict, analysis_fps: float,
                    evidence: EvidenceBar | None = None, scene_nouns: list[str] | None = None,
                    verbs: VerbEvidence | None = None, concepts: ConceptHead | None = None) -> Path:
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.cfg.to_dict(),
        # fp16 halves the file; the model is trained and run in fp32
        "state_dict": {k: v.detach().to(torch.float16) if v.is_floating_point() else v
                       for k, v in model.state_dict().items()},
        "vocab": vocab.to_dict(),
        "grounding": {"word_class": dict(word_class), "unseeable": list(unseeable), "scene_nouns": list(scene_nouns or [])},
        "backbone": {**backbone.layout(), "weights_name": backbone.weights_name,
                     "weights_sha256": backbone.weights_sha256},
        "analysis_fps": float(analysis_fps),
        "evidence_bar": (evidence or EvidenceBar()).to_dict(),
        "verb_evidence": (verbs or VerbEvidence()).to_dict(),
        "concepts": concepts.to_dict() if concepts is not None else None,
        # plain JSON types only, so weights_only loading accepts it
        "training": json.loads(json.dumps(training, default=str)),
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike | None = None) -> TrainedModel:
    from .coco import CLASS_INDEX

    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"caption model {path}: checkpoint format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        cfg = ModelConfig(**payload["config"])
        model = CaptionModel(cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        expected = set(model.state_dict())
        if set(state) != expected:  # e.g. saved by a version of captioner with another next-event head
            differ = sorted(set(state) ^ expected)
            raise ModelError(f"caption model {path}: its layers do not match this version of captioner "
                             f"({len(differ)} differ, e.g. {', '.join(differ[:3])}); retrain it with `captioner train` "
                             f"or use the weights/captioner.pt shipped with this version")
        model.load_state_dict(state)
        vocab = Vocabulary.from_dict(payload["vocab"])
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"caption model {path}: not a readable captioner checkpoint ({type(exc).__name__}: {exc})") from exc
    model.eval()
    stoi = vocab.stoi
    grounding_words = payload["grounding"]
    grounding = Grounding(
        word_class={stoi[w]: CLASS_INDEX[c] for w, c in grounding_words["word_class"].items() if w in stoi and " " not in w},
        unseeable={stoi[w] for w in grounding_words["unseeable"] if w in stoi},
        scene_words={stoi[w] for w in grounding_words.get("scene_nouns", []) if w in stoi},
    )
    # checkpoints from before the rate was stored at the top were trained at training.config.analysis_fps
    training = payload.get("training", {})
    analysis_fps = float(payload.get("analysis_fps") or training.get("config", {}).get("analysis_fps") or DEFAULT_ANALYSIS_FPS)
    evidence = EvidenceBar.from_dict(payload.get("evidence_bar"))
    verbs = VerbEvidence.from_dict(payload.get("verb_evidence"))
    concepts = ConceptHead.from_dict(payload.get("concepts"))
    return TrainedModel(model, vocab, grounding, payload["backbone"], training, analysis_fps, evidence, verbs, concepts,
                        str(path), file_sha256(path))


def check_backbone(saved: dict, actual: BackboneInfo) -> None:
    """Refuse features from a different YOLO layout; note a different checkpoint of the same one."""
    expected = {k: saved.get(k) for k in actual.layout()}
    if expected != actual.layout():
        diffs = ", ".join(f"{k}: model trained with {expected[k]!r}, got {v!r}" for k, v in actual.layout().items()
                          if expected[k] != v)
        raise ModelError(f"YOLO weights {actual.weights_name} do not fit this caption model ({diffs}). "
                         f"Use a {saved.get('architecture')} checkpoint or retrain with `captioner train`.")
    if saved.get("weights_sha256") and actual.weights_sha256 and saved["weights_sha256"] != actual.weights_sha256:
        log.warning("note: YOLO weights %s differ from those the caption model was trained with (%s); same "
                    "architecture and feature layout, so they are accepted", actual.weights_name, saved.get("weights_name"))
