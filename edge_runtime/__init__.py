"""Edge runtime: keyword spotting on a Raspberry-Pi-class device with numpy, a TFLite interpreter, soundfile and soxr.

Never imports torch or TensorFlow, and uses only relative imports inside the package, so a copy of this folder runs
on its own (`python -m edge_runtime --help`). Modules:

- `features`: the feature contract (`FeatureSpec`, `MelFrontEnd`), shared with training and conversion.
- `audio_io`: WAV files in, mono float32 at the spec's sample rate out.
- `interpreter`: a TFLite model that takes float features and returns float probabilities (int8 or float32 inside).
- `manifest`: reads and checks a model bundle (`manifest.json` + model file) against the interpreter.
- `detector`: sliding-window keyword probabilities over a recording, and detections with a refractory period.
- `stream_manifest`, `streaming`: the manifest's streaming model, and incremental features + the stateful step.
- `postprocess`: smoothing, threshold and refractory period over the stream of keyword probabilities.
- `verifier`: the optional second stage: a larger window model scored only while the smoothed probability is high.
- `sources`, `microphone`: WAV file, raw PCM on stdin, PyAudio microphone (resampling, overflow, reconnect).
- `config`, `runner`: the settings of `run` (command line / TOML / defaults) and its loop and outputs.
- `latency`, `bench`: per-step timing, percentiles, rtf, RSS; the `bench` command.
- `cli`: `python -m edge_runtime score|detect|run|bench`.

This file imports nothing on purpose: `train/` imports `edge_runtime.features` and must not pull in an interpreter.
"""
