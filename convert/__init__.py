"""Conversion: a trained checkpoint becomes a deployable edge bundle (`python -m convert --help`).

- `export_onnx`: PyTorch -> ONNX ending in class logits (the runtime applies the softmax), legacy exporter, opset 17.
- `windows`: real feature windows from the clip set (test split, int8 calibration from the train split).
- `to_tflite`: onnx2tf subprocess -> TFLite float32 and full-integer int8.
- `evaluate`: metrics of every artifact on the test split, int8-vs-float32 agreement.
- `stream_model`, `streaming`: the DS-CNN as a streaming step with explicit state, exported, converted, checked.
- `reference_latency`: the workstation's latency figures the device compares itself with.
- `manifest_writer`: the bundle's `manifest.json`, read back by `edge_runtime.manifest`.
- `pipeline`: the steps in order; `cli`: the command line.
"""
