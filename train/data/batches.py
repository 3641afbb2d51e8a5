"""Augmented training windows, batch by batch, made by worker processes while the model trains.

Augmentation is numpy work on the CPU: about 1 ms per window, most of an epoch when the model trains on a GPU (a
CRNN epoch on an H100 took 9 s, nearly all of it here). Worker processes make the next batches while the current
one trains.

Each batch draws its randomness from its own generator, seeded by (seed, stream, batch index), so a batch is the
same whichever process makes it and however many workers there are: `--workers` changes the speed, never the
model. A stream is one pass over an order of clips, named (kind, number): `train.fit`'s epoch (FIT_EPOCH, epoch),
`train.compress`'s bank view (BANK_VIEW, view).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
from collections.abc import Iterator

import numpy as np

from train.data.augment import Augmenter
from train.data.clipset import ClipSet

MAX_AUTO_WORKERS = 8  # enough to keep an H100 busy with a CRNN; more only adds memory
CLOSE_WAIT_S = 60.0  # how long `close` waits for batches in flight before it kills the workers anyway
BATCHES_AHEAD_PER_WORKER = 2  # batches in flight: keeps every worker busy without holding an epoch in memory

# Kinds of stream: train.fit's epochs and train.compress's bank views get different randomness from one seed.
FIT_EPOCH, BANK_VIEW = 0, 1
Stream = tuple[int, int]

# What a forked worker inherits: set just before the pool is made (fork copies it, the clips' arrays without a
# copy until written), read by `_make_batch`.
_shared: tuple[ClipSet, Augmenter, int] | None = None


def auto_workers(device_type: str, cpu_count: int | None = None) -> int:
    """On a GPU, all cores but the one that drives it, at most MAX_AUTO_WORKERS: a CRNN's 20 epochs on an H100
    went from 187 s to 35 s with 8. On the CPU none: the model step needs the cores, and workers were no faster
    on 16 cores and 14% slower on 2. None either where processes cannot be forked."""
    if device_type != "cuda" or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = cpu_count or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


def workers_option(text: str) -> int | None:
    """argparse type of `--workers`: "auto" (None, see `worker_count`) or a count >= 0."""
    if text == "auto":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number >= 0, got {text!r}")
    return count


def worker_count(requested: int | None, device_type: str) -> int:
    """The count asked for, or `auto_workers` for the device when None ("auto")."""
    return auto_workers(device_type) if requested is None else requested


def batch_generator(seed: int, stream: Stream, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream, index])


def augmented_batch(clips: ClipSet, augmenter: Augmenter, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [len(chosen), clip_samples]: one augmented window per clip index, all randomness from `rng`."""
    augmenter.rng = rng
    return np.stack([augmenter.window(clips.utterance(int(i))) for i in chosen])


def _make_batch(task: tuple[Stream, int, np.ndarray]) -> np.ndarray:
    stream, index, chosen = task
    clips, augmenter, seed = _shared
    return augmented_batch(clips, augmenter, chosen, batch_generator(seed, stream, index))


class AugmentedBatches:
    """`batches(order, batch_size, stream)` yields (audio, labels) in order; with `workers` > 0 a pool of forked
    processes makes them ahead. Use as a context manager (or call `close`) so the workers end."""

    def __init__(self, clips: ClipSet, augmenter: Augmenter, seed: int, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if workers and "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("augmentation workers need the 'fork' start method, which this platform lacks; "
                             "use 0 workers")
        self.clips, self.augmenter, self.seed, self.workers = clips, augmenter, seed, workers
        self._pool = None
        self._in_flight: set = set()  # AsyncResults not yet received: `close` lets them finish
        if workers:
            global _shared
            _shared = (clips, augmenter, seed)
            try:
                self._pool = multiprocessing.get_context("fork").Pool(workers)
            finally:
                _shared = None  # the workers have their copy; the parent keeps no second reference

    def batches(self, order: np.ndarray, batch_size: int, stream: Stream) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        tasks = [(stream, index, order[start : start + batch_size])
                 for index, start in enumerate(range(0, len(order), batch_size))]
        labels = [self.clips.labels[chosen].astype(np.int64) for _, _, chosen in tasks]
        if self._pool is None:
            for (_, index, chosen), batch_labels in zip(tasks, labels):
                rng = batch_generator(self.seed, stream, index)
                yield augmented_batch(self.clips, self.augmenter, chosen, rng), batch_labels
            return
        pending: collections.deque = collections.deque()
        upcoming = iter(tasks)
        for task in upcoming:
            pending.append(self._submit(task))
            if len(pending) >= BATCHES_AHEAD_PER_WORKER * self.workers:
                break
        for batch_labels in labels:
            result = pending.popleft()
            audio = result.get()
            self._in_flight.discard(result)
            next_task = next(upcoming, None)
            if next_task is not None:
                pending.append(self._submit(next_task))
            yield audio, batch_labels

    def _submit(self, task: tuple[Stream, int, np.ndarray]):
        result = self._pool.apply_async(_make_batch, (task,))
        self._in_flight.add(result)
        return result

    def close(self) -> None:
        """End the workers. Batches still being made are waited for first: a batch is larger than a pipe's
        buffer, and a worker killed halfway through sending one leaves the pool's result thread waiting for the
        rest of it forever (seen as a hang in `Pool.terminate` when a consumer stopped early)."""
        if self._pool is None:
            return
        for result in self._in_flight:
            result.wait(CLOSE_WAIT_S)
        self._in_flight.clear()
        self._pool.terminate()
        self._pool.join()
        self._pool = None

    def __enter__(self) -> AugmentedBatches:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
