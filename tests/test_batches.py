"""Augmented batches made by worker processes: the same batches as in-process, in order, for any worker count."""

import argparse

import numpy as np
import pytest

from edge_runtime.features import FeatureSpec
from tests.tiny import make_tiny_clipset
from train.data.augment import Augmenter
from train.data.batches import BANK_VIEW, FIT_EPOCH, AugmentedBatches, auto_workers, worker_count, workers_option
from train.data.clipset import ClipSet

SPEC = FeatureSpec()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return ClipSet.load(make_tiny_clipset(tmp_path_factory.mktemp("batches") / "clips"))


def augmenter(clips: ClipSet) -> Augmenter:
    # Every random step on (rooms, pseudo-speakers, channels, noise), so each draws from the batch's generator.
    return Augmenter(SPEC, clips.noise_bank(), np.random.default_rng(0), noise_probability=1.0,
                     speed_probability=0.5, room_probability=0.5, channel_probability=0.5)


def collect(clips: ClipSet, workers: int, order: np.ndarray, stream, seed: int = 3) -> list:
    with AugmentedBatches(clips, augmenter(clips), seed, workers) as batches:
        return list(batches.batches(order, 5, stream))


def test_workers_make_the_same_batches_as_one_process(clips):
    order = np.random.default_rng(1).permutation(clips.indices("train"))[:23]  # 5 batches, the last one short
    alone = collect(clips, 0, order, (FIT_EPOCH, 1))
    pooled = collect(clips, 2, order, (FIT_EPOCH, 1))
    assert [len(labels) for _, labels in alone] == [5, 5, 5, 5, 3]
    for (audio, labels), (pooled_audio, pooled_labels) in zip(alone, pooled, strict=True):
        assert audio.shape == (len(labels), SPEC.clip_samples) and audio.dtype == np.float32
        np.testing.assert_array_equal(audio, pooled_audio)
        np.testing.assert_array_equal(labels, pooled_labels)
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in alone]), clips.labels[order])
    assert np.abs(alone[0][0]).max() > 0  # real audio, not an empty window


def test_streams_and_seeds_draw_different_augmentation(clips):
    order = clips.indices("train")[:5]
    first = collect(clips, 0, order, (FIT_EPOCH, 1))[0][0]
    assert np.array_equal(first, collect(clips, 0, order, (FIT_EPOCH, 1))[0][0])  # repeatable
    assert not np.array_equal(first, collect(clips, 0, order, (FIT_EPOCH, 2))[0][0])
    assert not np.array_equal(first, collect(clips, 0, order, (BANK_VIEW, 1))[0][0])
    assert not np.array_equal(first, collect(clips, 0, order, (FIT_EPOCH, 1), seed=4)[0][0])


def test_an_early_stop_ends_the_workers(clips):
    order = clips.indices("train")
    batches = AugmentedBatches(clips, augmenter(clips), 0, workers=2)
    first = next(iter(batches.batches(order, 4, (FIT_EPOCH, 1))))  # a consumer that stops after one batch
    assert first[0].shape == (4, SPEC.clip_samples)
    pool, in_flight = batches._pool, list(batches._in_flight)
    assert in_flight  # the batches made ahead, which the consumer never took
    batches.close()
    # Every batch in flight was let finish before the workers were killed: killing one halfway through sending a
    # batch hung `Pool.terminate` (about 1 close in 300 here).
    assert all(result.ready() for result in in_flight)
    with pytest.raises(ValueError):  # a closed pool takes no more work
        pool.apply_async(len, ([],))


def test_worker_counts():
    assert auto_workers("cuda", 1) == 0 and auto_workers("cuda", 2) == 1 and auto_workers("cuda", 16) == 8
    assert auto_workers("cpu", 16) == 0  # measured: no faster on the CPU
    assert worker_count(None, "cpu") == 0 and worker_count(3, "cpu") == 3
    assert workers_option("auto") is None and workers_option("0") == 0 and workers_option("3") == 3
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="auto or a whole number"):
            workers_option(bad)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        AugmentedBatches(None, None, 0, workers=-1)
