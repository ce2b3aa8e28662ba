"""Is an export backend's captioning as truthful as PyTorch's? One table from `captioner eval` reports.

Runs ``captioner eval --backend B --json`` for each backend (features are cached per backend, so
a second run is quick) or reads reports already written, then compares each with torch's on
every real clip with human or hand labels:

- captions identical to the PyTorch path (the 89 hand-checked 4 s windows of the held-back clips,
  and the validation clips' whole-clip captions);
- object hallucination and salient-object recall against the hand-checked presence labels;
- wrong-verb rate and salient-verb recall against the hand-labelled verbs (held-back clips);
- next-event scores (presence micro-F1, enter / leave AUROC on the held-out clips);
- Flickr8k dev BLEU-4 / METEOR / CHAIR-i (the photos go through the backend too).

    python benchmarks/truthfulness.py --backends torch openvino-int8
    python benchmarks/truthfulness.py --reports torch=/tmp/torch.json openvino-int8=/tmp/int8.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_eval(backend: str, folder: Path) -> Path:
    out = folder / f"eval-{backend}.json"
    subprocess.run([sys.executable, "-m", "captioner", "eval", "--backend", backend, "--json", str(out)], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    return out


def window_captions(report: dict) -> dict:
    items = {(c["clip"], c["start"]): c["caption"] for c in report["real_windows"]["captions"]}
    items.update({(clip, "whole clip"): c["caption"] for clip, c in report["val_clips"]["captions"].items()})
    return items


def summary(report: dict) -> dict:
    windows, verbs = report["real_windows"], report["real_windows"]["verbs"]["held back"]
    photos = report["photos_dev"]["with_bar"]
    return {"hallucination": windows["hallucination_rate"], "salient recall": windows["salient_recall"],
            "wrong verbs": verbs["wrong_verb_rate"], "salient-verb recall": verbs["salient_verb_recall"],
            "presence F1": report["next_event"]["model"]["presence micro-F1"],
            "enter AUROC": report["next_event"]["model"]["enter AUROC"],
            "leave AUROC": report["next_event"]["model"]["leave AUROC"],
            "Flickr8k BLEU-4": photos["metrics"]["BLEU-4"], "METEOR": photos["metrics"]["METEOR"],
            "CHAIR-i": photos["chair"]["CHAIR-i"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", default=["torch", "openvino-int8"], help="run eval for these (none: only --reports)")
    parser.add_argument("--reports", nargs="*", default=[], metavar="BACKEND=REPORT.json")
    args = parser.parse_args()
    reports = dict(item.split("=", 1) for item in args.reports)
    folder = Path(tempfile.mkdtemp(prefix="captioner-truth-"))
    for backend in args.backends:
        reports.setdefault(backend, str(run_eval(backend, folder)))
    loaded = {b: json.loads(Path(p).read_text()) for b, p in reports.items()}
    if "torch" not in loaded:
        raise SystemExit("needs the torch report to compare with")
    reference = window_captions(loaded["torch"])
    rows = {b: summary(r) for b, r in loaded.items()}
    names = list(rows["torch"])
    print("| backend | captions identical to torch | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for backend, report in loaded.items():
        captions = window_captions(report)
        same = sum(captions.get(k) == v for k, v in reference.items())
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[backend].values()]
        print(f"| {backend} | {same}/{len(reference)} ({100 * same / len(reference):.0f} %) | " + " | ".join(cells) + " |")
    for backend, report in loaded.items():
        if backend == "torch":
            continue
        captions = window_captions(report)
        changed = [(k, reference[k], captions.get(k)) for k in reference if captions.get(k) != reference[k]]
        print(f"\n{backend}: {len(changed)} captions differ from torch")
        for (clip, start), a, b in changed:
            print(f"  {clip} {start}: torch {a!r} | {backend} {b!r}")


if __name__ == "__main__":
    main()
