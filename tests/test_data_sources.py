"""Data sources and the stored clip set: synthetic (tiny), Speech Commands layout, a user's folder, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_runtime.features import FeatureSpec
from train.data import clipset
from train.data.clipset import ClipSet, ClipSetWriter, build_dataset, loudest_window, trim_silence
from train.data.speech_commands import SpeechCommandsSource
from train.data.synthetic import SplitCounts, SyntheticSource, plan_requests
from train.data.user_folder import FolderSource, split_of
from train.data.vocabulary import negative_vocabulary

SPEC = FeatureSpec()
REPO = Path(__file__).resolve().parents[1]
TINY = SplitCounts(keyword_espeak=4, keyword_piper=2, other_espeak=6, other_piper=2, noise=2)
TINY_COUNTS = {"train": TINY, "val": TINY, "test": TINY}


def word_like(seconds: float, rate: int, hz: float = 300.0, silence: float = 0.2, channels: int = 1) -> np.ndarray:
    """A tone burst with a smooth envelope between stretches of silence: [samples] or [samples, channels]."""
    t = np.arange(round(seconds * rate)) / rate
    burst = 0.5 * np.sin(2 * np.pi * hz * t) * np.hanning(t.size) ** 0.25
    audio = np.concatenate([np.zeros(round(silence * rate)), burst, np.zeros(round(silence * rate))])
    return np.stack([audio] * channels, axis=1) if channels > 1 else audio


# ---- the stored form ----


def test_trim_drops_silence_and_long_utterances_keep_their_loudest_clip():
    audio = word_like(0.5, SPEC.sample_rate, silence=0.3).astype(np.float32)
    trimmed = trim_silence(audio, SPEC)
    assert 0.5 * SPEC.sample_rate <= trimmed.size <= 0.56 * SPEC.sample_rate  # burst + 20 ms margins at most
    long = np.concatenate([np.full(20000, 0.01), np.full(8000, 0.5), np.full(20000, 0.01)]).astype(np.float32)
    window = loudest_window(long, SPEC.clip_samples)
    assert window.size == SPEC.clip_samples and np.sum(window == np.float32(0.5)) == 8000


def test_writer_writes_atomically_and_loader_rejects_broken_folders(tmp_path, monkeypatch):
    writer = ClipSetWriter(SPEC)
    assert writer.add(word_like(0.4, SPEC.sample_rate), label=1, split="train", group="g", text="x")
    assert not writer.add(np.zeros(8000), label=0, split="train", group="g", text="")  # only silence: refused

    def fail_midway(path, arrays):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(clipset, "_write_npz", fail_midway)
    with pytest.raises(OSError):
        writer.write(tmp_path / "set", {"keyword": "x", "cache_key": "k", "labels": ["_other_", "x"]})
    assert list(tmp_path.iterdir()) == []  # no half data set, no leftover temp folder
    monkeypatch.undo()

    folder = writer.write(tmp_path / "set", {"keyword": "x", "cache_key": "k", "labels": ["_other_", "x"]})
    clips = ClipSet.load(folder)
    assert len(clips) == 1 and clips.utterance(0).dtype == np.float32
    with pytest.raises(ValueError, match="does not exist"):
        ClipSet.load(tmp_path / "nowhere")
    (folder / "clips.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt"):
        ClipSet.load(folder)
    (folder / "clips.npz").unlink()
    with pytest.raises(ValueError, match=r"missing clips\.npz"):
        ClipSet.load(folder)


# ---- synthetic ----


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory):
    """The same tiny synthetic build twice (2 workers, then 1) into separate caches."""
    roots = [tmp_path_factory.mktemp("cache-a"), tmp_path_factory.mktemp("cache-b")]
    folders = [
        build_dataset(SyntheticSource("sheila", counts=TINY_COUNTS, workers=workers, progress=False), SPEC, root, 3)
        for root, workers in zip(roots, (2, 1), strict=True)
    ]
    return roots, folders


def test_tiny_synthetic_build_has_the_planned_counts_and_splits(tiny_builds):
    _, (folder, _) = tiny_builds
    clips = ClipSet.load(folder)
    meta = clips.meta
    assert meta["keyword"] == "sheila" and meta["labels"] == ["_other_", "sheila"] and meta["sample_rate"] == 16000
    assert not meta["dropped_silent_utterances"]
    for split in ("train", "val", "test"):
        assert len(clips.indices(split, label=1)) == TINY.keyword_espeak + TINY.keyword_piper
        assert len(clips.indices(split, label=0)) == TINY.other_espeak + TINY.other_piper + TINY.noise
        assert meta["counts"][split] == {"keyword": 6, "other": 10}
    assert set(clips.texts[clips.labels == 1]) == {"sheila"}
    assert "sheila" not in " ".join(clips.texts[clips.labels == 0]).split()
    noise = np.flatnonzero(np.char.startswith(clips.groups.astype(str), "noise:"))
    assert noise.size == 3 * TINY.noise and set(clips.texts[noise]) == {""}
    assert clips.lengths.max() <= SPEC.clip_samples and clips.lengths.min() > 0
    assert all(np.abs(clips.utterance(i)).max() > 0.1 for i in clips.indices("train", label=1))
    assert len(clips.noise_bank()) >= 8 and all(n.size == 10 * SPEC.sample_rate for n in clips.noise_bank())


def test_held_out_voices_never_reach_train(tiny_builds):
    _, (folder, _) = tiny_builds
    clips = ClipSet.load(folder)

    def espeak_groups(split):
        return {g for g in clips.groups[clips.indices(split)] if g.startswith("espeak:")}

    train, val, test = espeak_groups("train"), espeak_groups("val"), espeak_groups("test")
    assert train and val and test
    assert not train & val and not train & test and not val & test
    held_out = clips.meta["held_out"]
    assert val <= set(held_out["val"]["espeak_groups"]) and test <= set(held_out["test"]["espeak_groups"])
    train_variants = {g.split("+")[1] if "+" in g else "" for g in train}
    assert not train_variants & set(held_out["test"]["espeak_variants"])
    assert all("piper:joe" in set(clips.groups[clips.indices(split)]) for split in ("train", "val", "test"))


def test_synthetic_build_is_deterministic_whatever_the_worker_count(tiny_builds):
    _, (first, second) = tiny_builds
    assert first.name == second.name
    assert (first / "clips.npz").read_bytes() == (second / "clips.npz").read_bytes()
    assert (first / "noise.npz").read_bytes() == (second / "noise.npz").read_bytes()


def test_an_existing_build_is_reused_without_work(tiny_builds, monkeypatch):
    (root, _), (folder, _) = tiny_builds
    source = SyntheticSource("sheila", counts=TINY_COUNTS, progress=False)
    monkeypatch.setattr(source, "build", lambda *args: pytest.fail("rebuilt a cached data set"))
    assert build_dataset(source, SPEC, root, 3) == folder
    other_seed = clipset.dataset_folder(source, SPEC, root, 4)
    assert other_seed != folder and other_seed.name.startswith("synthetic-sheila-")


@pytest.mark.parametrize("keyword", ["sheila", "go", "hey nova", "marvin"])
def test_negatives_never_say_the_keyword_and_every_kind_is_planned(keyword):
    vocabulary = negative_vocabulary(keyword)
    assert all(keyword not in f" {word} ".replace("'", " ").split(" ") for kind in vocabulary.values() for word in kind)
    if keyword == "hey nova":
        assert {"hey", "nova"} <= set(vocabulary["confusable"])
    requests = plan_requests(keyword, TINY_COUNTS, seed=0)
    assert len(requests) == 3 * (TINY.total - TINY.noise)
    assert {r.text for r in requests if r.label == 1} == {keyword}
    assert all(keyword not in r.text.split() for r in requests if r.label == 0 and " " not in keyword)


# ---- Speech Commands layout ----


@pytest.fixture
def speech_commands(tmp_path):
    """Tiny Speech Commands v2 layout: 3 words x 3 speakers x 2 takes, list files, background noise."""
    root = tmp_path / "speech_commands_v0.02"
    rate = 16000
    for word_index, word in enumerate(("sheila", "yes", "marvin")):
        (root / word).mkdir(parents=True)
        for speaker in ("aa11", "bb22", "cc33"):
            for take in range(2):
                audio = word_like(0.3 + 0.1 * take, rate, hz=200 + 100 * word_index)
                soundfile.write(root / word / f"{speaker}_nohash_{take}.wav", audio, rate, subtype="PCM_16")
    (root / "validation_list.txt").write_text(
        "sheila/bb22_nohash_0.wav\nsheila/bb22_nohash_1.wav\nyes/bb22_nohash_0.wav\n"
    )
    (root / "testing_list.txt").write_text("sheila/cc33_nohash_0.wav\nmarvin/cc33_nohash_1.wav\n")
    (root / "_background_noise_").mkdir()
    noise = np.random.default_rng(0).standard_normal(rate * 3) * 0.1
    soundfile.write(root / "_background_noise_" / "white_noise.wav", noise, rate, subtype="PCM_16")
    soundfile.write(root / "_background_noise_" / "pink_noise.wav", noise[: rate * 2], rate, subtype="PCM_16")
    (root / "README.md").write_text("not a word folder")
    return root


def test_speech_commands_splits_follow_the_lists(speech_commands, tmp_path):
    folder = build_dataset(SpeechCommandsSource(speech_commands, "sheila", progress=False), SPEC, tmp_path / "c", 0)
    clips = ClipSet.load(folder)
    assert len(clips) == 18
    val, test = clips.indices("val"), clips.indices("test")
    assert sorted(zip(clips.texts[val], clips.groups[val], strict=True)) == [
        ("sheila", "sc:bb22"), ("sheila", "sc:bb22"), ("yes", "sc:bb22")
    ]  # fmt: skip
    assert sorted(zip(clips.texts[test], clips.groups[test], strict=True)) == [
        ("marvin", "sc:cc33"),
        ("sheila", "sc:cc33"),
    ]
    assert len(clips.indices("train")) == 13
    assert np.array_equal(clips.labels == 1, clips.texts == "sheila") and int(clips.labels.sum()) == 6
    assert sorted(n.size for n in clips.noise_bank()) == [2 * 16000, 3 * 16000]
    assert clips.meta["source"] == "speech-commands" and clips.meta["noise_files"] == [
        "pink_noise.wav",
        "white_noise.wav",
    ]
    # Trimmed to the burst (0.3 or 0.4 s) plus small margins.
    assert clips.lengths.min() >= 0.3 * 16000 and clips.lengths.max() <= 0.45 * 16000


def test_speech_commands_layout_errors_say_what_is_expected(speech_commands, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        SpeechCommandsSource(tmp_path / "missing", "sheila")
    with pytest.raises(ValueError, match="no folder for keyword 'hello'.*marvin, sheila, yes"):
        SpeechCommandsSource(speech_commands, "hello")
    (speech_commands / "testing_list.txt").unlink()
    with pytest.raises(ValueError, match="expected validation_list.txt, testing_list.txt.*missing testing_list.txt"):
        SpeechCommandsSource(speech_commands, "sheila")


# ---- a user's folder ----


@pytest.fixture
def user_folder(tmp_path):
    root = tmp_path / "my_word"
    (root / "positive" / "ann").mkdir(parents=True)
    (root / "negative").mkdir()
    for take in range(6):  # 8 kHz, stereo, 24-bit
        audio = word_like(0.5, 8000, channels=2)
        soundfile.write(root / "positive" / "ann" / f"take{take}.wav", audio, 8000, subtype="PCM_24")
    for take in range(6):  # 44.1 kHz, mono, 32-bit float
        audio = word_like(0.25, 44100, hz=500)
        soundfile.write(root / "negative" / f"other{take}.wav", audio, 44100, subtype="FLOAT")
    (root / "negative" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    return root


def test_user_folder_is_resampled_split_by_path_and_reports_bad_files(user_folder, tmp_path, capsys):
    folder = build_dataset(FolderSource(user_folder, progress=False), SPEC, tmp_path / "c", 0)
    clips = ClipSet.load(folder)
    stderr = capsys.readouterr().err
    assert "skipped negative/broken.wav" in stderr and "skipped 1 of 13 audio files" in stderr
    assert clips.meta["skipped_files"][0].startswith("negative/broken.wav")
    assert clips.meta["keyword"] == "my word" and len(clips) == 12
    positives, negatives = clips.labels == 1, clips.labels == 0
    # 0.5 s and 0.25 s bursts at 16 kHz, plus at most 20 ms of margin on each side.
    assert np.all((clips.lengths[positives] >= 8000) & (clips.lengths[positives] <= 8700))
    assert np.all((clips.lengths[negatives] >= 4000) & (clips.lengths[negatives] <= 4700))
    assert set(clips.groups[positives]) == {"folder:positive/ann"} and set(clips.texts[positives]) == {"my word"}
    expected = [split_of(f"positive/ann/take{t}.wav") for t in range(6)] + [
        split_of(f"negative/other{t}.wav") for t in range(6)
    ]
    stored = [("train", "val", "test")[s] for s in np.concatenate([clips.splits[positives], clips.splits[negatives]])]
    assert sorted(stored) == sorted(expected)
    assert split_of("positive/ann/take0.wav") == split_of("positive/ann/take0.wav")
    shares = [split_of(f"x/{i}.wav") for i in range(2000)]
    assert shares.count("train") / 2000 == pytest.approx(0.8, abs=0.03)


def test_user_folder_needs_usable_positives(user_folder, tmp_path):
    for path in (user_folder / "positive" / "ann").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the files in .*positive could be used"):
        build_dataset(FolderSource(user_folder, progress=False), SPEC, tmp_path / "c", 0)
    with pytest.raises(ValueError, match="must hold 'positive/' and 'negative/'.*missing positive, negative"):
        FolderSource(tmp_path)


# ---- the command line ----


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train.build_data", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_builds_a_folder_source_and_prints_the_path_last(user_folder, tmp_path):
    result = run_cli("--source", "folder", "--data-dir", str(user_folder), "--keyword", "my word",
                     "--cache-root", str(tmp_path / "cache"), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path / "cache" and path.name.startswith("folder-my-word-")
    assert json.loads((path / "meta.json").read_text())["counts"] == ClipSet.load(path).meta["counts"]
    assert "train" in result.stdout and "my word" in result.stdout


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path):
    for args in (
        ("--source", "folder", "--data-dir", str(tmp_path / "missing")),
        ("--source", "speech-commands"),
        ("--source", "nonsense"),
        ("--keyword", "!!"),
    ):
        result = run_cli(*args, "--cache-root", str(tmp_path / "cache"))
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    help_text = " ".join(run_cli("--help").stdout.split())
    assert "--size" in help_text and "default: 1" in help_text and "default: sheila" in help_text
