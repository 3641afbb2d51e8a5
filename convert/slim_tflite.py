"""Smaller TFLite files: the names of intermediate tensors are dropped, the graph and every number stay.

On a 2K-parameter model most of the file is structure, not weights: onnx2tf names every intermediate tensor after
its TensorFlow op path (about 1.7 KB of the 11.4 KB int8 student, next to 2.5 KB of weights and biases). Nothing
reads those names: the edge runtime finds a model's tensors through its inputs and outputs (`get_input_details`,
`get_output_details`) and the streaming bundle matches its inputs by name, so the inputs' and outputs' names are
kept. The rewrite goes through TensorFlow's own flatbuffer object API (training venv only; the device never
runs it), in a child process so that TensorFlow's start-up chatter and memory stay out of the conversion's; the
callers check the slimmed files like any other (the agreement checks of `python -m convert`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from convert.errors import ConversionError


def drop_intermediate_names(path: Path) -> int:
    """Rewrite the TFLite file at `path` without the names of tensors that are neither a subgraph's input nor its
    output; returns the bytes saved."""
    from tensorflow.lite.tools import flatbuffer_utils  # heavy import; only conversion needs it

    before = path.stat().st_size
    model = flatbuffer_utils.read_model(str(path))
    for subgraph in model.subgraphs:
        kept = {int(index) for index in (*subgraph.inputs, *subgraph.outputs)}
        for index, tensor in enumerate(subgraph.tensors):
            if index not in kept:
                tensor.name = b""
    partial = path.with_name(path.name + ".partial")
    flatbuffer_utils.write_model(model, str(partial))
    partial.replace(path)
    return before - path.stat().st_size


def slim(paths: list[Path], log_path: Path) -> None:
    """`drop_intermediate_names` on each file, in a child process; its output is appended to `log_path`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "convert.slim_tflite", *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}exit status {result.returncode}\n")
    if result.returncode != 0:
        raise ConversionError(f"dropping tensor names from {', '.join(p.name for p in paths)} failed; see {log_path}")


def main(argv: list[str]) -> int:
    for name in argv:
        path = Path(name)
        print(f"{path.name}: {drop_intermediate_names(path)} bytes of tensor names dropped, {path.stat().st_size} left")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
