"""The training kit: everything that builds and measures a caption model, and nothing the runtime needs.

corpora.py   caption corpus readers (MSVD, MSR-VTT, ActivityNet, DiDeMo, YouCook2, user files), splits
lexicon.py   WordNet noun lexicon: which caption words name objects, and which COCO class
pairs.py     corpus sentences -> (sentence, pseudo-detection tokens) training pairs
describe.py  grounded event-template captions for real clip windows
forecast.py  next-event targets from the real future, and the baselines to beat
dataset.py   real clips -> tokens, targets and captioned windows (from the feature cache)
train.py     ``captioner train``: one plain training loop -> weights/captioner.pt
eval.py      ``captioner eval``: the model card's tables, through the runtime's own Stream
synthetic.py clips whose truth is known (tests, samples, benchmarks)
cli.py       the ``train`` / ``eval`` subcommands (registered as ``captioner.commands`` entry points)

It imports the runtime (``captioner.*``); the runtime never imports it.
"""
