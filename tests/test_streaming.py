"""Streaming equals window: the streaming step gives the window model's probabilities on every window it passes.

Two levels:
- torch: the streaming wrapper of several `CausalDSCNN` configurations (other channels, dilations, strides, a stem
  kernel shorter than its stride, BatchNorms replaced as folding would) against the window model, for several
  outputs per step: equal to float rounding (<= 1e-5; measured ~1e-7).
- the product: the converted bundle's streaming TFLite models through the edge runtime's `StreamingScorer`, fed
  audio in chunks of 1 sample, one hop, odd sizes and whole seconds. Every chunking gives bit-identical outputs;
  the float32 step equals the window float32 TFLite model within FLOAT_TOLERANCE, and the int8 step is within
  INT8_TOLERANCE of the window model (float and int8) with the same decisions at the threshold.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from convert.stream_model import NotStreamable, StreamingDSCNN, StreamLayout, window_start_of_output
from edge_runtime.detector import KeywordScorer
from edge_runtime.features import PCEN, FeatureSpec, MelFrontEnd, silence_frames
from edge_runtime.interpreter import TfliteModel
from edge_runtime.manifest import load_bundle
from edge_runtime.postprocess import DetectionPolicy, PostProcessor, smoothed_track
from edge_runtime.stream_manifest import load_stream_bundle
from edge_runtime.streaming import StreamingFrontEnd, StreamingScorer
from tests.tiny import LABELS, SPEC, TINY_CONFIGS, convert_tiny, keyword_sound, other_sound, shared_dscnn_bundle
from train.models import build_model

FLOAT_TOLERANCE = 1e-5  # probability, float32 stream vs float32 window (measured <= 3e-7)
INT8_TOLERANCE = 0.06  # probability, int8 stream vs window (measured 0.03 on the tiny model: a few int8 steps)
PCEN_INT8_TOLERANCE = 0.2  # the same with PCEN features (measured 0.144; see the PCEN bundle's test)
CHUNK_SIZES = (1, 37, SPEC.hop_samples, 1000, SPEC.sample_rate)
CONFIGS = [
    {},
    TINY_CONFIGS["dscnn"],
    {"channels": 8, "stem_kernel": 2, "stem_stride": 3, "dilations": [1, 3]},  # stem kernel < stride
    {"channels": 8, "stem_kernel": 5, "stem_stride": 1, "kernel_size": 2, "dilations": [1, 1, 2]},
    {"channels": 8, "stem_kernel": 1, "stem_stride": 5, "stem_filter": 5, "dilations": [1, 2]},  # separable stem
    {"channels": 8, "stem_kernel": 1, "stem_stride": 3, "stem_filter": 4, "dilations": [1, 2]},  # filter > stride
    {"channels": 8, "stem_kernel": 1, "stem_stride": 4, "stem_rank": 5, "dilations": [1, 2]},  # low-rank stem
]


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so normalisation matters in the comparison."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def folded(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorms replaced by Identity, as a compression pass that folds them into the convolutions leaves it."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.BatchNorm1d):
                setattr(parent, name, torch.nn.Identity())
    return model


def stream_vs_window(model: torch.nn.Module, steps: int, features: torch.Tensor, encoded: bool = False) -> float:
    stream = StreamingDSCNN(model, SPEC, steps).eval()
    if encoded:  # any affine encoding of the buffers decodes to the same values
        stream.encode_state([(-3.0 - index, 2.0 + 2 * index) for index in range(len(stream.layout.buffers))])
    layout, window = stream.layout, SPEC.frames_per_clip
    floor = torch.full((window, SPEC.n_mels), float(np.log(SPEC.log_floor)))
    state = stream.zero_state()
    outputs = []
    with torch.no_grad():
        for _ in range(layout.prime_steps(stream.frames_per_step)):
            _, state = stream(floor[: stream.frames_per_step].reshape(1, -1), state)
        for start in range(0, len(features), stream.frames_per_step):
            logits, state = stream(features[start : start + stream.frames_per_step].reshape(1, -1), state)
            outputs.append(torch.softmax(logits[0], dim=-1))
        streamed = torch.cat(outputs)
        padded = torch.cat([floor, features, floor])
        starts = [window_start_of_output(layout, n) + window for n in range(len(streamed))]
        windows = torch.stack([padded[s : s + window] for s in starts])
        expected = torch.softmax(model(windows), dim=-1)
    return float((streamed - expected).abs().max())


CONFIG_IDS = ["default", "tiny", "stride3-kernel2", "stride1", "stem-filter", "stem-filter-overlapping", "stem-rank"]


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_torch_stream_equals_window_model(config, steps):
    torch.manual_seed(0)
    model = randomised(build_model("dscnn", SPEC.n_mels, len(LABELS), **config))
    stream_frames = StreamLayout.of(model, SPEC).stride * steps * 30
    features = torch.randn(stream_frames, SPEC.n_mels) * 3 - 6
    assert stream_vs_window(model, steps, features) <= FLOAT_TOLERANCE
    assert stream_vs_window(model, steps, features, encoded=True) <= FLOAT_TOLERANCE


def test_torch_stream_of_a_folded_model_equals_its_window_model():
    torch.manual_seed(0)
    model = folded(randomised(build_model("dscnn", SPEC.n_mels, len(LABELS), **TINY_CONFIGS["dscnn"])))
    features = torch.randn(200, SPEC.n_mels)
    assert stream_vs_window(model, 5, features) <= FLOAT_TOLERANCE


def test_only_the_dscnn_streams():
    crnn = build_model("crnn", SPEC.n_mels, len(LABELS), **TINY_CONFIGS["crnn"])
    with pytest.raises(NotStreamable, match="only the causal DS-CNN streams; this model is a CRNN"):
        StreamLayout.of(crnn, SPEC)
    padded = build_model("dscnn", SPEC.n_mels, len(LABELS), **TINY_CONFIGS["dscnn"])
    padded.blocks[0].depthwise.padding = (1,)
    with pytest.raises(NotStreamable, match="block 0 must hold stride-1, unpadded Conv1d layers"):
        StreamLayout.of(padded, SPEC)


@pytest.mark.parametrize("front_end_name", ["log-mel-v1", PCEN])
def test_front_end_stream_equals_whole_signal(front_end_name):
    spec = dataclasses.replace(SPEC, front_end=front_end_name)
    audio = np.random.default_rng(0).standard_normal(SPEC.sample_rate * 2).astype(np.float32) * 0.1
    audio *= np.linspace(0.1, 1.0, audio.size, dtype=np.float32)  # a rising level, which PCEN's smoother follows
    front_end = StreamingFrontEnd(spec, 10)
    frames = []
    for start in range(0, len(audio), 333):
        front_end.push(audio[start : start + 333])
        while front_end.ready():
            frames.append(front_end.pop())
    streamed = np.concatenate(frames)
    whole = MelFrontEnd(spec).frames(audio)
    assert streamed.shape[0] == whole.shape[0] // 10 * 10
    np.testing.assert_allclose(streamed, whole[: streamed.shape[0]], atol=1e-5)
    front_end.reset()  # a new stream: PCEN's smoother starts again, from the new stream's first clip
    front_end.push(audio[: front_end.samples_per_call])
    assert front_end.ready() == (front_end_name == "log-mel-v1")  # PCEN waits for a clip: 10 calls of 10 frames
    front_end.push(audio[front_end.samples_per_call : spec.frame_end_sample(front_end.first_calls * 10 - 1)])
    np.testing.assert_allclose(front_end.pop(), whole[:10], atol=1e-6)


def test_a_pcen_stream_shorter_than_its_first_clip_flushes_every_frame_it_heard():
    spec = dataclasses.replace(SPEC, front_end=PCEN)
    audio = np.random.default_rng(1).standard_normal(int(0.35 * spec.sample_rate)).astype(np.float32) * 0.1
    front_end = StreamingFrontEnd(spec, 10)
    front_end.push(audio)
    assert not front_end.ready()
    flushed = front_end.flush()
    assert len(flushed) == 4  # 35 frames start on a real sample: 4 calls of 10
    # The frames of the audio completed with zeros to the first clip, as the signal taken whole gives them.
    padded = np.concatenate([audio, np.zeros(spec.frame_end_sample(99) - audio.size, np.float32)])
    np.testing.assert_allclose(np.concatenate(flushed), MelFrontEnd(spec).frames(padded)[:40], atol=1e-6)
    assert front_end.flush() == []


@pytest.fixture(scope="module")
def bundle():
    return shared_dscnn_bundle()


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """6 s: keyword chirps and noise bursts at known times (on digital silence, the tiny model's background)."""
    rng = np.random.default_rng(3)
    audio = np.zeros(6 * SPEC.sample_rate, np.float32)
    for start, sound in ((0.5, keyword_sound(rng)), (2.0, other_sound(rng)), (3.4, keyword_sound(rng))):
        at = int(start * SPEC.sample_rate)
        audio[at : at + len(sound)] += sound
    return audio


def streamed_track(bundle_dir, audio: np.ndarray, chunk: int, float32: bool = False, phases: int | None = 1):
    """(times, keyword probabilities) of the bundle's streaming scorer; `phases` overrides the manifest's (None:
    as written)."""
    stream_bundle = load_stream_bundle(bundle_dir, float32=float32)
    entry = stream_bundle.stream if phases is None else dataclasses.replace(stream_bundle.stream, phases=phases)
    scorer = StreamingScorer(entry, stream_bundle.keyword_index)
    steps = [step for start in range(0, len(audio), chunk) for step in scorer.push(audio[start : start + chunk])]
    return np.concatenate([s.times_s for s in steps]), np.concatenate([s.scores for s in steps])


def streamed_probabilities(bundle_dir, audio: np.ndarray, chunk: int, float32: bool) -> np.ndarray:
    """One phase: each output is the window model's on one window."""
    return streamed_track(bundle_dir, audio, chunk, float32)[1]


def window_probabilities(
    model_path, manifest: dict, audio: np.ndarray, outputs: int, spec: FeatureSpec = SPEC
) -> np.ndarray:
    """The window TFLite model on the window matching each stream output (silence frames before the audio)."""
    layout = StreamLayout.of(build_model("dscnn", spec.n_mels, len(LABELS), **TINY_CONFIGS["dscnn"]), spec)
    window = spec.frames_per_clip
    features = np.concatenate([silence_frames(window, spec), MelFrontEnd(spec).frames(audio)])
    model = TfliteModel(model_path)
    keyword = manifest["keyword_index"]
    starts = [window_start_of_output(layout, n) + window for n in range(outputs)]
    return np.array([model.probabilities(features[s : s + window])[keyword] for s in starts], np.float32)


def test_bundle_stream_equals_window_model_for_every_chunking(bundle, audio):
    manifest = json.loads((bundle / "manifest.json").read_text())
    stream = manifest["streaming"]
    assert stream["tensors"]["state"]["scale"] == stream["tensors"]["state_out"]["scale"]
    assert stream["tensors"]["state"]["zero_point"] == stream["tensors"]["state_out"]["zero_point"]

    by_chunk = {chunk: streamed_probabilities(bundle, audio, chunk, float32=False) for chunk in CHUNK_SIZES}
    int8 = by_chunk[SPEC.hop_samples]
    for chunk, scores in by_chunk.items():
        np.testing.assert_array_equal(scores, int8, err_msg=f"chunks of {chunk} samples")
    float32 = streamed_probabilities(bundle, audio, SPEC.hop_samples, float32=True)
    steps = SPEC.num_frames(len(audio)) // stream["frames_per_step"]
    assert float32.shape == int8.shape == (steps * stream["outputs_per_step"],)

    window_float = window_probabilities(bundle / "model_float32.tflite", manifest, audio, len(float32))
    window_int8 = window_probabilities(bundle / "model_int8.tflite", manifest, audio, len(int8))
    assert np.abs(float32 - window_float).max() <= FLOAT_TOLERANCE
    assert np.abs(int8 - window_float).max() <= INT8_TOLERANCE
    assert np.abs(int8 - window_int8).max() <= INT8_TOLERANCE
    threshold = manifest["detection"]["threshold"]
    assert np.mean((int8 >= threshold) == (window_float >= threshold)) >= 0.97
    assert window_float.max() > 0.9 and window_float.min() < 0.1  # the audio really holds keywords and non-keywords


def test_a_phased_scorer_merges_one_phase_scorers_that_hear_the_audio_later(bundle, audio):
    """Every phase of the stride: the scorer's outputs are those of one-phase scorers hearing the audio `lag` hops
    later (silence before it), their times taken back by the lag, in time order; each phase keeps its own state."""
    entry = load_stream_bundle(bundle).stream
    assert entry.phases == entry.stride_frames == 2 and entry.phase_lags == [0, 1]  # convert's default: all
    assert entry.output_period_s == pytest.approx(SPEC.hop_ms / 1000)  # one score per frame
    by_chunk = {chunk: streamed_track(bundle, audio, chunk, float32=True, phases=None) for chunk in (37, 1600)}
    times, scores = by_chunk[1600]
    np.testing.assert_array_equal(by_chunk[37][1], scores)
    assert np.all(np.diff(times) > 0) and np.allclose(np.diff(times), SPEC.hop_ms / 1000)
    hop_s = SPEC.hop_samples / SPEC.sample_rate
    expected = []
    for lag in entry.phase_lags:
        later = np.concatenate([np.zeros(lag * SPEC.hop_samples, np.float32), audio])  # audio starts silent
        lag_times, lag_scores = streamed_track(bundle, later, 1600, float32=True, phases=1)
        expected += list(zip(lag_times[: len(times) // 2] - lag * hop_s, lag_scores[: len(times) // 2], strict=True))
    expected.sort(key=lambda pair: pair[0])
    np.testing.assert_allclose(times, [t for t, _ in expected], atol=1e-9)
    np.testing.assert_allclose(scores, [p for _, p in expected], atol=FLOAT_TOLERANCE)
    one = streamed_track(bundle, audio, 1600, float32=True, phases=1)[1]
    np.testing.assert_array_equal(scores[1::2], one)  # the first phase is the one-phase scorer itself
    assert np.abs(scores[0::2] - one).max() > 0.1  # the second scores other windows


def keyword_at_end(samples: int = SPEC.sample_rate) -> np.ndarray:
    """Digital silence ending in a short keyword (a 0.25 s chirp) that stops with the input."""
    chirp = keyword_sound(np.random.default_rng(7), seconds=0.25)
    audio = np.zeros(samples, np.float32)
    audio[-len(chirp) :] = chirp
    return audio


def test_end_of_input_flush_scores_the_last_partial_step(bundle):
    """At the end of the input the audio short of a whole step is scored, completed with silence: a keyword that
    ends with the file scores as the window model scores the file, instead of being cut off by the last step."""
    audio = keyword_at_end()
    window_peak = KeywordScorer(load_bundle(bundle)).window_scores(audio).peak  # one window: the whole 1 s file
    stream_bundle = load_stream_bundle(bundle)
    results = []
    for chunk in (37, 1000, SPEC.sample_rate):
        scorer = StreamingScorer(stream_bundle.stream, stream_bundle.keyword_index)
        steps = [step for start in range(0, len(audio), chunk) for step in scorer.push(audio[start : start + chunk])]
        assert len(steps) == 9 and scorer.audio_seconds == pytest.approx(0.9)  # 1 s = 9 whole 100 ms steps + 0.1 s
        flushed = scorer.flush()
        assert len(flushed) == 1 and scorer.audio_seconds == 1.0 and scorer.steps_done == 10
        results.append(np.concatenate([step.scores for step in steps + flushed]))
        times = flushed[0].times_s  # up to the first output that has read the last sample, no further
        assert times[-2] < 1.0 <= times[-1] < 1.0 + stream_bundle.stream.stride_frames * SPEC.hop_ms / 1000
    for scores in results[1:]:
        np.testing.assert_array_equal(scores, results[0])
    entry = stream_bundle.stream
    whole_steps = 9 * entry.outputs_per_step * entry.phases
    before, after = results[0][:whole_steps].max(), results[0].max()
    assert before < window_peak - 0.2  # measured 0.49 vs 0.79: without the flush the keyword is cut off
    assert abs(after - window_peak) <= INT8_TOLERANCE  # measured 0.785 vs 0.785


def test_flush_with_a_tail_scores_silence_after_the_end_for_the_smoothing(bundle):
    """A tail of silence after the end keeps the keyword in view long enough for a moving average to reach it;
    the tail is scored time, not audio."""
    from edge_runtime.postprocess import smoothed_track

    audio = keyword_at_end()
    stream_bundle = load_stream_bundle(bundle)
    period = stream_bundle.stream.output_period_s

    def scores(tail: float):
        scorer = StreamingScorer(stream_bundle.stream, stream_bundle.keyword_index)
        steps = scorer.push(audio) + scorer.flush(tail_seconds=tail)
        assert scorer.audio_seconds == 1.0
        return np.concatenate([s.times_s for s in steps]), np.concatenate([s.scores for s in steps])

    (plain_times, plain), (tail_times, tailed) = scores(0.0), scores(0.5)
    assert 1.0 <= plain_times[-1] < 1.0 + period and 1.5 <= tail_times[-1] < 1.5 + period
    np.testing.assert_array_equal(tailed[: plain.size - 1], plain[:-1])  # the real audio scores as before
    # Averaged over 0.5 s, the keyword at the very end only reaches its level with the tail after it.
    assert smoothed_track(tailed, 0.5, period).max() > smoothed_track(plain, 0.5, period).max() + 0.1
    with pytest.raises(ValueError, match="tail_seconds"):
        StreamingScorer(stream_bundle.stream, stream_bundle.keyword_index).flush(tail_seconds=-1.0)


def test_flush_adds_nothing_when_every_sample_is_in_a_step(bundle):
    stream_bundle = load_stream_bundle(bundle)
    scorer = StreamingScorer(stream_bundle.stream, stream_bundle.keyword_index)
    exact = 9 * scorer.front_end.advance + SPEC.window_samples - SPEC.hop_samples  # frames end with the audio
    assert len(scorer.push(keyword_at_end(exact))) == 9
    assert scorer.flush() == [] and scorer.audio_seconds == exact / SPEC.sample_rate


def test_postprocessing_fires_once_per_rise_and_respects_the_refractory_period():
    period = 0.02
    post = PostProcessor(DetectionPolicy(threshold=0.5, refractory_seconds=1.0, smoothing_seconds=0.0), period)
    scores = np.zeros(200, np.float32)
    scores[10:90] = 0.9  # one keyword held in view for 1.6 s: one detection at 0.22 s, not two
    scores[100:105] = 0.9  # a new rise at 2.02 s, long after the refractory period: fires
    scores[150:160] = 0.9  # a rise exactly 1 s (the refractory period) after that: fires
    scores[170:175] = 0.9  # a rise 0.4 s after that: within the refractory period, ignored
    times = (np.arange(200) + 1) * period
    found = [round(d.time_s, 2) for d in post.update(times[:100], scores[:100])]  # steps split anywhere
    found += [round(d.time_s, 2) for d in post.update(times[100:], scores[100:])]
    assert found == [0.22, 2.02, 3.02]
    smoothing = PostProcessor(DetectionPolicy(0.5, 1.0, 0.1), period)  # 5 outputs: a 2-output blip never fires
    blip = np.zeros(20, np.float32)
    blip[5:7] = 1.0
    assert smoothing.update(times[:20], blip) == []


def test_the_offline_smoothed_track_is_what_the_post_processor_thresholds():
    period, rng = 0.05, np.random.default_rng(3)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    times = (np.arange(scores.size) + 1) * period
    smoothed = smoothed_track(scores, 0.1, period)
    assert smoothed.shape == scores.shape and smoothed[0] == pytest.approx(scores[0] / 2)  # primed with silence
    for threshold in (0.3, 0.6, 0.85):
        post = PostProcessor(DetectionPolicy(threshold, refractory_seconds=0.0, smoothing_seconds=0.1), period)
        fired = [d.time_s for d in post.update(times[:150], scores[:150]) + post.update(times[150:], scores[150:])]
        above = smoothed >= threshold
        rises = above & ~np.concatenate([[False], above[:-1]])
        assert fired == pytest.approx(times[rises].tolist())


def test_a_bundle_whose_int8_step_fails_the_agreement_check_streams_in_float32(tmp_path, bundle, audio):
    """The conversion's fallback (`convert.streaming.streaming_in_float32`) on a real bundle: the int8 step is
    removed, the manifest names the float32 twin, and the runtime streams it exactly like the twin."""
    import shutil

    from convert.streaming import streaming_in_float32

    source, bundle = bundle, tmp_path / "bundle"
    shutil.copytree(source, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    int8_file = manifest["streaming"]["file"]
    agreement = {"decision_agreement": 0.9, "windows": 100}
    manifest["streaming"] = streaming_in_float32(manifest["streaming"], bundle, agreement, 0.97)
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    assert not (bundle / int8_file).exists()
    section = manifest["streaming"]
    assert section["precision"] == "float32" and section["file"] == section["float32"]["file"]
    assert section["int8_rejected"]["decision_agreement"] == 0.9 and section["int8_rejected"]["file"] == int8_file
    deployed = load_stream_bundle(bundle)
    assert deployed.stream.path.name == section["float32"]["file"] and deployed.stream.precision == "float32"
    np.testing.assert_array_equal(
        streamed_probabilities(bundle, audio, 1600, float32=False),
        streamed_probabilities(source, audio, 1600, float32=True),
    )


def test_the_int8_step_outputs_logits_so_the_top_probabilities_keep_their_order(bundle, audio):
    """An int8 softmax has steps of 1/256: above 0.99 it has two levels, and a detector tuned to a fraction of a
    false accept per hour decides up there. The step outputs logits; the runtime's softmax keeps their order."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["streaming"]["output"] == "class logits"
    assert manifest["streaming"]["tensors"]["probabilities"]["dtype"] == "int8"
    int8 = streamed_probabilities(bundle, audio, 1600, float32=False)
    top = int8[int8 > 0.99]
    assert np.unique(top).size > 2, f"{np.unique(top).size} levels above 0.99"


def test_a_streaming_section_with_an_unknown_output_is_refused(tmp_path, bundle):
    import shutil

    from edge_runtime.errors import KwsError

    shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    manifest["streaming"]["output"] = "class log-probabilities"
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KwsError, match="streaming.output is 'class log-probabilities'; allowed: 'class logits'"):
        load_stream_bundle(tmp_path / "bundle")


@pytest.mark.parametrize("phases", [0, 3, 1.5, "all"])
def test_a_streaming_section_with_phases_outside_the_stride_is_refused(tmp_path, bundle, phases):
    import shutil

    from edge_runtime.errors import KwsError

    shutil.copytree(bundle, tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    manifest["streaming"]["phases"] = phases
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KwsError, match=r"streaming.phases must be a whole number from 1 to stride_frames \(2\)"):
        load_stream_bundle(tmp_path / "bundle")
    del manifest["streaming"]["phases"]  # a bundle from before phases: one phase, as it was converted for
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    assert load_stream_bundle(tmp_path / "bundle").stream.phases == 1


@pytest.fixture(scope="module")
def pcen_bundle(tmp_path_factory):
    return convert_tiny(tmp_path_factory.mktemp("pcen"), "dscnn", dataclasses.replace(SPEC, front_end=PCEN))[1]


def test_a_pcen_bundle_streams_what_its_window_model_computes(pcen_bundle, audio):
    """PCEN through the whole product: the spec travels in the manifest, the runtime's streaming front-end carries
    the smoother between calls, and the stream equals the window model on the same continuous features."""
    spec = dataclasses.replace(SPEC, front_end=PCEN)
    manifest = json.loads((pcen_bundle / "manifest.json").read_text())
    assert manifest["feature_spec"]["front_end"] == PCEN
    assert load_stream_bundle(pcen_bundle).stream.spec == spec
    by_chunk = {chunk: streamed_probabilities(pcen_bundle, audio, chunk, float32=True) for chunk in (37, 1600)}
    np.testing.assert_array_equal(by_chunk[37], by_chunk[1600])
    window_float = window_probabilities(pcen_bundle / "model_float32.tflite", manifest, audio, len(by_chunk[37]), spec)
    assert np.abs(by_chunk[37] - window_float).max() <= FLOAT_TOLERANCE
    int8 = streamed_probabilities(pcen_bundle, audio, SPEC.hop_samples, float32=False)
    # Wider than log-mel's: after a chirp in digital silence PCEN falls to ~0.001, below one step of the int8
    # input (0.0225), so the int8 step and window lose different detail there (0.144 measured, one output).
    assert np.abs(int8 - window_float).max() <= PCEN_INT8_TOLERANCE
    threshold = manifest["detection"]["threshold"]
    assert np.mean((int8 >= threshold) == (window_float >= threshold)) >= 0.97
    assert window_float.max() > 0.9 and window_float.min() < 0.1  # it learned the tiny task on PCEN features
    # The window detector, fed in blocks, carries the smoother too: the same scores as the signal taken whole.
    scorer = KeywordScorer(load_bundle(pcen_bundle))
    whole = scorer.window_scores(audio)
    blocks = [audio[start : start + 5000] for start in range(0, len(audio), 5000)]
    np.testing.assert_allclose([score for _, score in scorer.stream_windows(blocks)], whole.scores, atol=1e-6)
