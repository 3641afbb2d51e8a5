"""Training data and augmentation for generalization: hard negatives from any keyword, rooms, channels, speakers."""

import numpy as np
import pytest

from edge_runtime.features import FeatureSpec
from train.data.augment import Augmenter, band_limit, fast_fft_size, reverberate, synthetic_rir
from train.data.clipset import SPLITS, ClipSet, build_dataset
from train.data.homophones import espeak_homophones, sound_key
from train.data.piper_voice import PiperVoiceFile
from train.data.synthetic import SplitCounts, SyntheticSource, plan_requests, spoken_negatives
from train.data.vocabulary import hard_negatives, negative_vocabulary, pronunciations_of

SPEC = FeatureSpec()


def test_hard_negatives_are_parts_insides_and_neighbours_never_the_keyword():
    sheila = hard_negatives("sheila")
    assert "she" in sheila["part"] and "leila" in sheila["neighbour"]
    nova = hard_negatives("hey nova")
    assert {"hey", "nova", "hey there"} <= set(nova["part"]) or {"hey", "nova"} <= set(nova["part"])
    assert "supernova" in nova["inside"] and any(p.startswith("hey no") for p in nova["neighbour"])
    for keyword, kinds in (("sheila", sheila), ("hey nova", nova)):
        said = [word for words in kinds.values() for word in words]
        keyword_phones = set(pronunciations_of(keyword))
        assert keyword not in said and f"{keyword}s" not in said and f"{keyword}'s" not in said
        assert not keyword_phones & {p for word in said for p in pronunciations_of(word)}


def test_words_an_espeak_accent_says_like_the_keyword_are_not_negatives():
    # "scheeler" is one CMU phone from "sheila" (ER for AH) but eSpeak's RP and Caribbean voices say both [S'i:la#].
    assert sound_key("S'i:la#") == sound_key("S'i:l3") == sound_key("S'i:l@") == "Si:l@"
    assert sound_key("S'i:li") != sound_key("S'i:l@")
    assert espeak_homophones("sheila", ("scheeler", "shealy", "sheena", "sheila")) == ("scheeler", "sheila")
    vocabulary, dropped = spoken_negatives("sheila")
    assert dropped == ["scheeler"] and "scheeler" in negative_vocabulary("sheila")["hard"]
    assert all("scheeler" not in words for words in vocabulary.values()) and "shealy" in vocabulary["hard"]
    planned = {r.text for r in plan_requests("sheila", {s: SplitCounts(0, 0, 400, 0, 0) for s in SPLITS}, seed=0)}
    assert not any("scheeler" in text.split() for text in planned)


def test_a_keyword_outside_the_dictionary_still_gets_its_parts():
    hard = hard_negatives("zorblat gix")
    assert {"zorblat", "gix"} <= set(hard["part"]) and hard["inside"] == [] and hard["neighbour"] == []


@pytest.fixture(scope="module")
def hey_nova_build(tmp_path_factory):
    """A tiny build for "hey nova" that also names the bundled Piper voice as a user's extra voice."""
    tiny = SplitCounts(keyword_espeak=2, keyword_piper=2, other_espeak=16, other_piper=2, noise=1)
    source = SyntheticSource(
        "Hey  Nova", counts={"train": tiny, "val": tiny, "test": tiny}, workers=1, progress=False,
        piper_voices=[PiperVoiceFile.joe().model],
    )  # fmt: skip
    return ClipSet.load(build_dataset(source, SPEC, tmp_path_factory.mktemp("cache"), seed=5))


def test_a_tiny_hey_nova_build_has_hard_negatives_from_the_phrase(hey_nova_build):
    clips = hey_nova_build
    assert clips.meta["keyword"] == "hey nova" and clips.meta["labels"] == ["_other_", "hey nova"]
    assert set(clips.texts[clips.labels == 1]) == {"hey nova"}
    hard = set(spoken_negatives("hey nova")[0]["hard"])
    assert hard == set(clips.meta["negative_vocabulary"]["hard"])
    negatives = [text for text in clips.texts[clips.labels == 0] if text]
    assert sum(text in hard for text in negatives) >= 3
    assert not any(" hey nova " in f" {text} " for text in negatives)


def test_a_user_piper_voice_joins_the_data_and_the_cache_key(hey_nova_build):
    clips = hey_nova_build
    groups = set(clips.groups.tolist())
    assert "piper:joe" in groups and "piper:en_US-joe-medium" in groups
    assert [v["name"] for v in clips.meta["source_config"]["piper_voices"]] == ["en_US-joe-medium"]
    plain = SyntheticSource("hey nova", counts={s: SplitCounts(1, 1, 1, 1, 1) for s in ("train", "val", "test")})
    assert "piper_voices" not in plain.config()
    with pytest.raises(ValueError, match="onnx"):
        SyntheticSource("hey nova", piper_voices=["missing.onnx"])


def test_multi_speaker_voices_are_planned_over_all_their_speakers():
    joe = PiperVoiceFile.joe()
    many = PiperVoiceFile(joe.model, joe.config, "libritts", num_speakers=5, sample_rate=22050)
    counts = {s: SplitCounts(0, 60, 0, 60, 0) for s in ("train", "val", "test")}
    requests = plan_requests("sheila", counts, seed=0, piper_voices=[many])
    groups = {r.group for r in requests}
    assert {f"piper:libritts#{speaker}" for speaker in range(5)} <= groups and "piper:joe" in groups
    assert all(r.options.speaker == int(r.group.split("#")[1]) for r in requests if "#" in r.group)


def tone(seconds: float, hz: float = 500.0) -> np.ndarray:
    t = np.arange(round(seconds * SPEC.sample_rate)) / SPEC.sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_rooms_reverberate_from_the_direct_path_and_decay_at_their_rt60():
    rng = np.random.default_rng(0)
    rir = synthetic_rir(SPEC, rng, rt60_s=0.4, drr_db=3.0)
    assert rir[0] == 1.0 and np.sum(rir[1:] ** 2) == pytest.approx(10 ** (-3 / 10), rel=1e-4)
    early = np.mean(rir[800:1600] ** 2)  # 50-100 ms
    late = np.mean(rir[4800:5600] ** 2)  # 300-350 ms: 0.25 s later, i.e. 0.25/0.4 of 60 dB lower
    assert 10 * np.log10(early / late) == pytest.approx(60 * 0.25 / 0.4, abs=6)
    click = np.zeros(4000, np.float32)
    click[100] = 1.0
    assert np.allclose(reverberate(click, rir)[100:4000], rir[:3900], atol=1e-5)
    assert fast_fft_size(17601) == 18000 and fast_fft_size(16000) == 16000


def test_channel_removes_what_a_cheap_microphone_does_not_pass():
    audio = tone(1.0, 100.0) + tone(1.0, 1000.0) + tone(1.0, 7000.0)
    passed = np.abs(np.fft.rfft(band_limit(audio, SPEC, 300.0, 4000.0)))
    assert passed[100] < 0.01 * passed[1000] and passed[7000] < 0.01 * passed[1000]


def test_augmenter_pseudo_speakers_and_rooms_are_seeded_and_keep_the_window_length():
    utterance = tone(0.6)
    made = [
        Augmenter(SPEC, [], np.random.default_rng(4), speed_probability=1.0, room_probability=1.0,
                  channel_probability=1.0, gain_db=(0.0, 0.0))
        for _ in range(2)
    ]  # fmt: skip
    first, second = ([a.window(utterance) for _ in range(20)] for a in made)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert all(w.shape == (SPEC.clip_samples,) and w.dtype == np.float32 for w in first)
    # Speed changes the length of the sound; rooms add a tail: the voiced span differs from the plain 0.6 s.
    spans = [np.ptp(np.flatnonzero(np.abs(w) > 1e-3)) / SPEC.sample_rate for w in first]
    assert len({round(s, 2) for s in spans}) > 5


def test_augmenter_defaults_come_from_the_module_when_it_is_built(monkeypatch):
    import train.data.augment as augment

    monkeypatch.setattr(augment, "ROOM_PROBABILITY", 0.75)
    assert Augmenter(SPEC, [], np.random.default_rng(0)).room_probability == 0.75
    with pytest.raises(ValueError, match="room_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), room_probability=2.0)
