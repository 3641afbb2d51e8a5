"""Long-audio evaluation of a deployed bundle: `python -m train.evaluate --model artifacts/edge` (see `cli.py`).

Positive streams (continuous speech with the keyword at known times) and negative streams (hours of speech and
noise without it) are synthesized from voices, seeds, texts and noise that training never used (`streams.py`),
cached on disk, scored by the edge runtime's own detector (`detectors.py`) and by a pocketsphinx peer
(`peer.py`), and summarized as FRR and false accepts per hour (`scoring.py`, `report.py`).
"""
