"""Score every artifact on the same windows; compare the int8 model with the float one it came from.

TFLite files are run through the edge runtime's own `TfliteModel` (same quantize/dequantize code as the device),
so the numbers in the manifest are the numbers of what is deployed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.interpreter import TfliteModel
from train.metrics import detection_metrics


def tflite_probabilities(path: Path, windows: np.ndarray) -> np.ndarray:
    """[n, frames, n_mels] -> [n, num_classes] float32 through the edge runtime's interpreter wrapper."""
    model = TfliteModel(path)
    return np.stack([model.probabilities(window) for window in windows])


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def keyword_metrics(probabilities: np.ndarray, labels: np.ndarray, keyword_index: int, threshold: float) -> dict:
    """`detection_metrics` (accuracy, FRR, FAR, ROC AUC) of the keyword probability at the deployed threshold."""
    return detection_metrics(probabilities[:, keyword_index], labels, threshold)


def int8_agreement(int8: np.ndarray, float32: np.ndarray, keyword_index: int, threshold: float) -> dict:
    """How far quantization moved the keyword probability, and how often it changed the decision."""
    quantized, reference = int8[:, keyword_index].astype(np.float64), float32[:, keyword_index].astype(np.float64)
    difference = np.abs(quantized - reference)
    return {
        "windows": int(len(reference)),
        "threshold": float(threshold),
        "decision_agreement": float(np.mean((quantized >= threshold) == (reference >= threshold))),
        "max_abs_probability_difference": float(difference.max()),
        "mean_abs_probability_difference": float(difference.mean()),
    }
