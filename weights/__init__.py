"""The model files captioner ships: package data ``captioner.weights`` (see ``model_files.py``).

``yolo11n-coco-int8w.pt``: the YOLO11n backbone the caption model was trained on;
``captioner.pt``: the trained caption model; ``MODEL_CARD.md``: what both are and how they score.
"""
