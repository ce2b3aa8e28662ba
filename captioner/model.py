"""Stage 5: the LSTM encoder, the next-event head and the attention LSTM caption decoder.

Shapes (B batch, T frames, F token dim, H hidden, K object slots, L caption length, V vocab):

    tokens (B, T, F) -> FrameEncoder -> states (B, T, H)          unidirectional: steppable live
    states (B, T, H) + presence stats (B, T, C, S) -> NextEventHead -> presence/enter/leave (B, T, C), direction (B, T, 5)
    memory = [segment states (B, T, H) ; grid cells (B, G, H) ; object slots (B, K, H) ; track slots (B, Kt, H)]
    DecoderWithAttention(memory, words (B, L)) -> hidden (B, L, H) -> adaptive softmax -> word log-probabilities

An object slot is a class seen in the segment: its class embedding, its evidence statistics and
what its boxes look like (RoI appearance). A track slot is one tracked object: its class, how it
moved over the segment (``track_slots.py``) and what it looks like. Grid cells are the last neck map pooled to 6 x 6 (3 x 3 in older checkpoints),
averaged over the segment: where things are, and what the scene is (grass, snow, a street).

In the manner of sgrvinod's image-captioning tutorial: soft (Bahdanau) attention over the
memory at every word, a gate on the attended context, and an LSTMCell decoder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .coco import NUM_CLASSES
from .errors import ModelError
from .tokens import SLOT_FEATURES, TokenLayout, WindowObjects
from .track_slots import TRACK_FEATURES, TrackSlots

log = logging.getLogger(__name__)

STYLE_HUMAN, STYLE_EVENTS = 0, 1  # phrasing learned from human captions / from event templates
STYLE_IDS = {"human": STYLE_HUMAN, "events": STYLE_EVENTS}  # CaptionOptions.style -> style embedding
NUM_DIRECTIONS = 5  # none, left, right, toward, away (see events.DIRECTIONS)


@dataclass
class ModelConfig:
    embedding_dim: int = 448  # pooled YOLO feature size (64 + 128 + 256 for YOLO11n P3-P5)
    vocab_size: int = 1000
    hidden: int = 256
    word_dim: int = 192
    attention_dim: int = 192
    dropout: float = 0.3
    horizon_sec: float = 3.0
    max_caption_len: int = 20
    cell_dim: int = 256  # channels of the last neck map (P5 of YOLO11n)
    cell_count: int = 36  # perception.CELL_GRID ** 2 (9 in checkpoints trained on a 3x3 grid)
    use_cells: bool = True  # attend over grid cells (an ablation switch)
    use_appearance: bool = True  # give object slots their RoI appearance (an ablation switch)
    track_slots: int = 0  # per-track motion slots in the memory (0 in checkpoints trained before them)

    @property
    def token_dim(self) -> int:
        return TokenLayout(self.embedding_dim).dim

    def to_dict(self) -> dict:
        return asdict(self)


class FrameEncoder(nn.Module):
    """Tokens -> LSTM states. The pooled YOLO part is layer-normalised (its scale varies by
    layer); detection and motion parts are already in small, fixed ranges."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding_dim = cfg.embedding_dim
        self.visual_norm = nn.LayerNorm(cfg.embedding_dim)
        self.project = nn.Sequential(nn.Linear(cfg.token_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.lstm = nn.LSTM(cfg.hidden, cfg.hidden, batch_first=True)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens (B, T, F) -> states (B, T, H), (h, c) each (1, B, H)."""
        visual = tokens[..., : self.embedding_dim]
        has_visual = tokens[..., -1:]  # the flag: 0 for corpus pairs and modality-dropped windows
        visual = self.visual_norm(visual) * has_visual
        x = torch.cat([visual, tokens[..., self.embedding_dim:]], dim=-1)
        return self.lstm(self.project(x), state)


RECENT_FRAMES = 4  # "now" for the forecast: about the last second at the 4 fps analysis rate
SHARE_SPANS = (1, 2, 4, 8, 16)  # look-backs (frames) of the presence statistics: 0.25 s .. 4 s at 4 fps
HISTORY_FRAMES = max(SHARE_SPANS)  # how many past frames the next-event head needs
PRESENCE_STATS = len(SHARE_SPANS) + 4  # shares + confidence now, mean confidence, log-count now, mean log-count
STAT_RECENT_SHARE = SHARE_SPANS.index(RECENT_FRAMES)  # positions in the statistics vector
STAT_CONF, STAT_LOG_COUNT = len(SHARE_SPANS), len(SHARE_SPANS) + 2
SCENE_DIM = 8  # the encoder state's say in presence: a small scene summary, shared by all classes


def causal_mean(values: torch.Tensor, frames: int) -> torch.Tensor:
    """Mean over the last ``frames`` steps (fewer at the start), causal: (B, T, C) -> (B, T, C)."""
    total = values.cumsum(dim=1)
    before = torch.cat([torch.zeros_like(total[:, :frames]), total[:, :-frames]], dim=1)[:, : total.shape[1]]
    steps = torch.arange(1, total.shape[1] + 1, device=values.device).clamp(max=frames)
    return (total - before) / steps[None, :, None]


def presence_stats(conf: torch.Tensor, log_counts: torch.Tensor) -> torch.Tensor:
    """Per-class evidence of being in view, (B, T, C) each -> (B, T, C, PRESENCE_STATS): the
    share of the last 1..16 frames the class was seen in (the persistence baseline uses the
    4-frame one), its confidence now and over the last second, and its log-count likewise.
    Detectors flicker, so how *often* and how *surely* a class was seen says more about the next
    seconds than the last frame alone."""
    seen = (log_counts > 0).float()
    shares = [causal_mean(seen, n) for n in SHARE_SPANS]
    recent_conf, recent_counts = causal_mean(conf, RECENT_FRAMES), causal_mean(log_counts, RECENT_FRAMES)
    return torch.stack(shares + [conf, recent_conf, log_counts, recent_counts], dim=-1)


@dataclass
class NextEventLogits:
    """What the next-event head says about the next ``horizon_sec``, as logits.

    presence, enter, leave: (B, T, C) per COCO class; direction: (B, T, NUM_DIRECTIONS) over
    ``events.DIRECTIONS`` (the dominant motion).
    """

    presence: torch.Tensor
    enter: torch.Tensor
    leave: torch.Tensor
    direction: torch.Tensor

    def last_step(self, b: int = 0) -> "NextEventProbabilities":
        """Probabilities at the last time step of sequence ``b``."""
        return NextEventProbabilities(
            presence=torch.sigmoid(self.presence[b, -1]).tolist(), enter=torch.sigmoid(self.enter[b, -1]).tolist(),
            leave=torch.sigmoid(self.leave[b, -1]).tolist(), direction=torch.softmax(self.direction[b, -1], -1).tolist())


@dataclass
class NextEventProbabilities:
    """One time step's next-event probabilities: lists of C (per class) and NUM_DIRECTIONS floats."""

    presence: list[float]
    enter: list[float]
    leave: list[float]
    direction: list[float]


class NextEventHead(nn.Module):
    """What happens in the next ``horizon_sec``: per-class presence, enter, leave (logits) and
    the dominant motion direction.

    Presence is scored by one small network shared by all 80 classes, reading that class's
    presence statistics plus an 8-d scene summary of the LSTM state, and a per-class bias.
    Sharing across classes is what lets ~2,000 training steps generalise: the earlier head mapped
    the whole state to 80 class-specific logits, overfitted the few clips each class appears in
    and lost to persistence on held-out clips (0.796 vs 0.827 micro-F1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = NUM_CLASSES
        self.mlp = nn.Sequential(nn.Linear(cfg.hidden + 3 * c, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.hidden, 2 * c + NUM_DIRECTIONS))  # enter, leave, direction
        self.scene = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, SCENE_DIM), nn.Tanh())
        self.presence_net = nn.Sequential(nn.Linear(PRESENCE_STATS + SCENE_DIM, 32), nn.ReLU(), nn.Linear(32, 1))
        self.presence_bias = nn.Parameter(torch.zeros(c))

    def forward(self, states: torch.Tensor, stats: torch.Tensor) -> NextEventLogits:
        """states (B, T, H); stats (B, T, C, PRESENCE_STATS) from ``presence_stats``."""
        c = NUM_CLASSES
        now = stats[..., [STAT_CONF, STAT_LOG_COUNT, STAT_RECENT_SHARE]].flatten(-2)  # (B, T, 3C)
        out = self.mlp(torch.cat([states, now], dim=-1))
        scene = self.scene(states).unsqueeze(-2).expand(*stats.shape[:-1], SCENE_DIM)
        presence = self.presence_net(torch.cat([stats, scene], dim=-1)).squeeze(-1) + self.presence_bias
        return NextEventLogits(presence=presence, enter=out[..., :c], leave=out[..., c:2 * c], direction=out[..., 2 * c:])


class Attention(nn.Module):
    def __init__(self, memory_dim: int, hidden: int, attention_dim: int):
        super().__init__()
        self.memory_proj = nn.Linear(memory_dim, attention_dim)
        self.hidden_proj = nn.Linear(hidden, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, memory: torch.Tensor, memory_proj: torch.Tensor, mask: torch.Tensor, h: torch.Tensor):
        """memory (B, M, H), memory_proj (B, M, A), mask (B, M) bool, h (B, H) -> context (B, H), alpha (B, M)."""
        scores = self.score(torch.tanh(memory_proj + self.hidden_proj(h).unsqueeze(1))).squeeze(-1)
        alpha = torch.softmax(scores.masked_fill(~mask, -1e4), dim=-1)
        return (alpha.unsqueeze(-1) * memory).sum(dim=1), alpha


@dataclass
class SegmentInputs:
    """What the decoder reads for B segments, padded: encoder states (B, T, H) and mask (B, T);
    object slots: classes (B, K), features (B, K, SLOT_FEATURES), appearance (B, K, D), mask
    (B, K); grid cells (B, G, Cc) and mask (B, G) (False where a segment has none; G is 0 when
    no segment of the batch has cells); track slots: classes (B, Kt), features (B, Kt,
    TRACK_FEATURES), appearance (B, Kt, D), mask (B, Kt) (Kt is 0 for models without them)."""

    states: torch.Tensor
    state_mask: torch.Tensor
    slot_classes: torch.Tensor
    slot_feats: torch.Tensor
    slot_appearance: torch.Tensor
    slot_mask: torch.Tensor
    cells: torch.Tensor
    cell_mask: torch.Tensor
    track_classes: torch.Tensor | None = None
    track_feats: torch.Tensor | None = None
    track_appearance: torch.Tensor | None = None
    track_mask: torch.Tensor | None = None


def fit_grid(cells: np.ndarray, count: int) -> np.ndarray:
    """Grid cells (G*G, C) as a model with ``count`` cells reads them: a finer grid averaged in
    blocks (6x6 -> 3x3 for a checkpoint trained on 3x3 cells); else they must match."""
    have, want = int(round(len(cells) ** 0.5)), int(round(count ** 0.5))
    if len(cells) == count:
        return cells
    if have * have != len(cells) or want * want != count or have % want:
        raise ModelError(f"grid cells: got {len(cells)}, this caption model reads {count}; use the weights shipped "
                         f"with this version of captioner or retrain with `captioner train`")
    k = have // want
    return np.ascontiguousarray(cells.reshape(want, k, want, k, -1).mean(axis=(1, 3)).reshape(count, -1))


def segment_inputs(states: list[torch.Tensor], objects: list[WindowObjects], cells: list,
                   cfg: ModelConfig, tracks: list[TrackSlots | None] | None = None) -> SegmentInputs:
    """Pad B segments: states[b] (T_b, H), objects[b], cells[b] (G, Cc) numpy or None, tracks[b]
    (already limited to the classes the decoder may see) or None."""
    b = len(states)
    t = max(1, max(len(x) for x in states))
    k = max(1, max(len(o) for o in objects))
    g = cfg.cell_count if cfg.use_cells and any(c is not None for c in cells) else 0  # no cells: no attention over them
    kt = min(cfg.track_slots, max(1, max(len(x) for x in tracks if x is not None))) if cfg.track_slots and tracks and any(
        x is not None for x in tracks) else 0
    out = SegmentInputs(
        states=torch.zeros(b, t, cfg.hidden), state_mask=torch.zeros(b, t, dtype=torch.bool),
        slot_classes=torch.zeros(b, k, dtype=torch.long), slot_feats=torch.zeros(b, k, SLOT_FEATURES),
        slot_appearance=torch.zeros(b, k, cfg.embedding_dim), slot_mask=torch.zeros(b, k, dtype=torch.bool),
        cells=torch.zeros(b, g, cfg.cell_dim), cell_mask=torch.zeros(b, g, dtype=torch.bool),
        track_classes=torch.zeros(b, kt, dtype=torch.long), track_feats=torch.zeros(b, kt, TRACK_FEATURES),
        track_appearance=torch.zeros(b, kt, cfg.embedding_dim), track_mask=torch.zeros(b, kt, dtype=torch.bool))
    for i, tr in enumerate(tracks or []):
        if tr is None or not kt:
            continue
        n = min(len(tr), kt)
        out.track_classes[i, :n] = torch.from_numpy(tr.class_ids[:n])
        out.track_feats[i, :n] = torch.from_numpy(tr.features[:n])
        out.track_appearance[i, :n] = torch.from_numpy(tr.appearance[:n])
        out.track_mask[i, :n] = True
    for i, (x, o, c) in enumerate(zip(states, objects, cells)):
        out.states[i, :len(x)], out.state_mask[i, :len(x)] = x, True
        n = len(o)
        out.slot_classes[i, :n] = torch.from_numpy(o.class_ids)
        out.slot_feats[i, :n] = torch.from_numpy(o.features)
        out.slot_appearance[i, :n] = torch.from_numpy(o.appearance)
        out.slot_mask[i, :n] = True
        if c is not None and g:
            out.cells[i], out.cell_mask[i] = torch.from_numpy(fit_grid(c, cfg.cell_count)), True
    if not cfg.use_appearance:
        out.slot_appearance.zero_()
        out.slot_feats[..., -1] = 0.0  # "has appearance"
        out.track_appearance.zero_()
        out.track_feats[..., -1] = 0.0
    return out


class DecoderWithAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.class_embed = nn.Embedding(NUM_CLASSES, h)
        self.slot_proj = nn.Linear(SLOT_FEATURES, h)
        self.appearance_norm = nn.LayerNorm(cfg.embedding_dim)
        self.appearance_proj = nn.Linear(cfg.embedding_dim, h)
        self.cell_norm = nn.LayerNorm(cfg.cell_dim)
        self.cell_proj = nn.Linear(cfg.cell_dim, h)
        self.cell_position = nn.Parameter(torch.zeros(cfg.cell_count, h))
        if cfg.track_slots:
            self.track_proj = nn.Sequential(nn.Linear(TRACK_FEATURES, h), nn.ReLU(), nn.Linear(h, h))
            self.track_kind = nn.Parameter(torch.zeros(h))  # tells a track slot from its class's slot
        self.style_embed = nn.Embedding(2, h)
        self.word_embed = nn.Embedding(cfg.vocab_size, cfg.word_dim, padding_idx=0)
        self.attention = Attention(h, h, cfg.attention_dim)
        self.init_h, self.init_c = nn.Linear(h, h), nn.Linear(h, h)
        self.gate = nn.Linear(h, h)
        self.cell = nn.LSTMCell(cfg.word_dim + h, h)
        self.dropout = nn.Dropout(cfg.dropout)
        # adaptive softmax (Grave et al. 2017): frequent words at full width, rare ones in
        # smaller clusters; 4x cheaper than a full 6,000-word projection, which dominated training
        cutoffs = [c for c in (1000, 3000) if c < cfg.vocab_size - 1] or [max(1, cfg.vocab_size // 2)]
        self.out = nn.AdaptiveLogSoftmaxWithLoss(h, cfg.vocab_size, cutoffs, div_value=4.0)

    def memory(self, x: SegmentInputs):
        """Concatenate segment states, grid cells and object slots -> memory (B, M, H), mask (B, M),
        and the memory's attention projection (computed once per segment, not once per word)."""
        has_appearance = x.slot_feats[..., -1:]  # 0 for corpus pairs, which have no pixels
        slots = (self.class_embed(x.slot_classes) + self.slot_proj(x.slot_feats)
                 + self.appearance_proj(self.appearance_norm(x.slot_appearance)) * has_appearance)
        parts, masks = [x.states, slots], [x.state_mask, x.slot_mask]
        if x.cells.shape[1]:
            parts.insert(1, self.cell_proj(self.cell_norm(x.cells)) + self.cell_position)
            masks.insert(1, x.cell_mask)
        if self.cfg.track_slots and x.track_classes is not None and x.track_classes.shape[1]:
            has_appearance = x.track_feats[..., -1:]
            parts.append(self.class_embed(x.track_classes) + self.track_proj(x.track_feats) + self.track_kind
                         + self.appearance_proj(self.appearance_norm(x.track_appearance)) * has_appearance)
            masks.append(x.track_mask)
        memory = torch.cat(parts, dim=1)
        mask = torch.cat(masks, dim=1)
        return memory, mask, self.attention.memory_proj(memory)

    def init_state(self, memory, mask, style):
        weights = mask.float().unsqueeze(-1)
        mean = (memory * weights).sum(1) / weights.sum(1).clamp(min=1.0) + self.style_embed(style)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def advance(self, words, h, c, memory, memory_proj, mask):
        """The LSTM step for one word of each of B sequences: words (B,) -> new (h, c), alpha (B, M)."""
        context, alpha = self.attention(memory, memory_proj, mask, h)
        context = torch.sigmoid(self.gate(h)) * context
        h, c = self.cell(torch.cat([self.word_embed(words), context], dim=-1), (h, c))
        return h, c, alpha

    def step(self, words, h, c, memory, memory_proj, mask):
        """One word for each of B sequences: words (B,) -> log-probabilities (B, V), new (h, c), alpha (B, M)."""
        h, c, alpha = self.advance(words, h, c, memory, memory_proj, mask)
        return self.out.log_prob(self.dropout(h)), h, c, alpha

    def forward(self, memory, mask, memory_proj, style, captions):
        """Teacher forcing. captions (B, L) start with <bos>; returns the hidden states (B, L-1, H)
        that predict captions[:, 1:] (through ``self.out``, the adaptive softmax)."""
        h, c = self.init_state(memory, mask, style)
        hidden = []
        for t in range(captions.shape[1] - 1):
            h, c, _ = self.advance(captions[:, t], h, c, memory, memory_proj, mask)
            hidden.append(h)
        return self.dropout(torch.stack(hidden, dim=1))


class CaptionModel(nn.Module):
    """Encoder + next-event head + caption decoder. One instance serves many streams: all
    per-stream state (LSTM h/c, tracker) lives outside, in the caller's session object."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.layout = TokenLayout(cfg.embedding_dim)
        self.encoder = FrameEncoder(cfg)
        self.next_head = NextEventHead(cfg)
        self.decoder = DecoderWithAttention(cfg)

    def presence_stats(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, C, PRESENCE_STATS) per-class presence statistics for the next-event head."""
        return presence_stats(tokens[..., self.layout.conf], tokens[..., self.layout.counts])

    def encode(self, tokens: torch.Tensor, state=None):
        return self.encoder(tokens, state)

    def predict_next(self, states: torch.Tensor, tokens: torch.Tensor) -> NextEventLogits:
        return self.next_head(states, self.presence_stats(tokens))

    def caption_loss(self, inputs: SegmentInputs, style: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the caption words (padding ignored)."""
        memory, mask, memory_proj = self.decoder.memory(inputs)
        hidden = self.decoder(memory, mask, memory_proj, style, captions)
        targets = captions[:, 1:]
        words = targets != 0
        return self.decoder.out(hidden[words], targets[words]).loss


def next_event_loss(predicted: NextEventLogits, targets: dict[str, torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy for presence/enter/leave and cross-entropy for direction, over the
    time steps that have a full future horizon (``valid`` (B, T) bool). ``targets``: presence,
    enter, leave (B, T, C) 0/1 and direction (B, T) class indices."""
    if not valid.any():
        return predicted.presence.sum() * 0.0
    loss = 0.0
    for key in ("presence", "enter", "leave"):
        loss = loss + F.binary_cross_entropy_with_logits(getattr(predicted, key)[valid], targets[key][valid])
    return loss + 0.5 * F.cross_entropy(predicted.direction[valid], targets["direction"][valid])
