"""The Makefile's plan for training and conversion (`make -n`): which teachers train on which data, and which
checkpoint the bundle is verified by, for the verifier options."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(*targets_and_settings: str) -> str:
    """What `make -n` would run (and any error it prints) for these targets and VAR=value settings."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *targets_and_settings],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


def plan(*settings: str, out: str = "/tmp/kws-plan") -> str:
    return dry_run("data", "train", "convert", f"OUT={out}", *settings)


def trainings(text: str) -> list[tuple[str, str, str]]:
    """(data path file, seed, out folder) of every `train.fit` the plan runs."""
    found = re.findall(r"train\.fit --data \"\$\(cat ([^)]+)\)\".*?--seed (\d+).*?--out (\S+)", text)
    return [(Path(data).name, seed, Path(out).name) for data, seed, out in found]


def test_default_verifier_teachers_train_on_their_own_three_times_larger_data() -> None:
    text = plan()
    assert "--size 1 " in text and "--size 3 " in text  # the student's clip set, then the verifier's
    assert trainings(text) == [
        ("data_path.txt", "0", "crnn"),  # the teacher the student is compressed from (issue 5's baseline)
        ("verifier_data_path.txt", "0", "verifier-crnn-seed0"),
        ("verifier_data_path.txt", "1", "verifier-crnn-seed1"),
        ("verifier_data_path.txt", "2", "verifier-crnn-seed2"),
    ]
    # The verifier's teachers are wider CRNNs; the compression teacher keeps the baseline's size (issue 5).
    fits = re.findall(r"train\.fit [^&\n]*", text)
    assert "--model-config" not in fits[0]
    assert all("--model-config '{\"hidden_size\": 128, \"conv_channels\": 16}'" in line for line in fits[1:])
    assert re.search(r"train\.ensemble --data \"\$\(cat /tmp/kws-plan/verifier_data_path.txt\)\"", text)
    assert re.search(r"--members( +/tmp/kws-plan/train/verifier-crnn-seed[012]/best\.pt){3} ", text)
    assert re.search(r"--verifier +/tmp/kws-plan/train/verifier/best\.pt", text)


def test_verifier_size_equal_to_size_shares_the_student_data() -> None:
    # With the CRNN's own size (VERIFIER_CONFIG empty) the compression teacher is the verifier's first member.
    text = plan("VERIFIER_SIZE=1", "VERIFIER_CONFIG=")
    assert not re.search(r"--size [2-9]", text) and "verifier_data_path" not in text
    assert trainings(text) == [
        ("data_path.txt", "0", "crnn"), ("data_path.txt", "1", "crnn-seed1"), ("data_path.txt", "2", "crnn-seed2"),
    ]
    members = r"--members +/tmp/kws-plan/train/crnn/best\.pt( +/tmp/kws-plan/train/crnn-seed[12]/best\.pt){2} "
    assert re.search(members, text)
    assert re.search(r"--verifier +/tmp/kws-plan/train/verifier/best\.pt", text)


def test_one_verifier_teacher_on_its_own_data_is_the_verifier() -> None:
    text = plan("VERIFIER_TEACHERS=1")
    assert trainings(text)[1:] == [("verifier_data_path.txt", "0", "verifier-crnn-seed0")]
    assert "train.ensemble" not in text
    assert re.search(r"--verifier +/tmp/kws-plan/train/verifier-crnn-seed0/best\.pt", text)


def test_one_teacher_on_the_student_data_is_the_compression_teacher_itself() -> None:
    text = plan("VERIFIER_TEACHERS=1", "VERIFIER_SIZE=1", "VERIFIER_CONFIG=")
    assert trainings(text) == [("data_path.txt", "0", "crnn")]
    assert "train.ensemble" not in text
    assert re.search(r"--verifier +/tmp/kws-plan/train/crnn/best\.pt", text)


def test_other_data_sources_keep_one_clip_set() -> None:
    text = plan("DATA=folder", "DATA_DIR=/tmp/nowhere")
    assert "verifier_data_path" not in text
    # The verifier's wider teachers train apart from the compression teacher, on the same clip set.
    assert [out for _, _, out in trainings(text)] == [
        "crnn", "verifier-crnn-seed0", "verifier-crnn-seed1", "verifier-crnn-seed2",
    ]
    same_size = plan("DATA=folder", "DATA_DIR=/tmp/nowhere", "VERIFIER_CONFIG=")
    assert [out for _, _, out in trainings(same_size)] == ["crnn", "crnn-seed1", "crnn-seed2"]


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_verifier_size_is_one_error_line(value: str) -> None:
    text = plan(f"VERIFIER_SIZE={value}")
    assert f"VERIFIER_SIZE must be a whole number >= 1, got '{value}'" in text
    assert "train.fit" not in text


def eval_plan(target: str, *settings: str) -> str:
    return dry_run(target, "OUT=/tmp/kws-plan", *settings)


def test_eval_val_scores_the_val_voices_and_chooses_the_threshold_there() -> None:
    """`make eval-val` is what training changes are chosen on and where the shipped threshold is chosen."""
    text = eval_plan("eval-val")
    assert re.search(r"train\.evaluate --split val --no-peer --model /tmp/kws-plan/edge --out /tmp/kws-plan/eval-val ",
                     text)  # fmt: skip
    assert "--negative-hours 10 --positives 400" in text and "--target-fa-per-hour 0.5" in text
    assert "--target-fa-per-hour" not in eval_plan("eval-val", "EVAL_TARGET_FA=")  # the manifest keeps its own
    assert "--gates" not in text


def test_eval_gates_sweep_the_verifier_gate_on_val_only() -> None:
    """The gate, like the threshold, is chosen on the val voices: EVAL_GATES never reaches the test streams."""
    joined = eval_plan("eval", "EVAL_GATES=0.05,0.1,0.2").replace("\\\n", " ")
    val, test = [line for line in joined.splitlines() if "train.evaluate" in line]
    assert re.search(r"--gates 0\.05,0\.1,0\.2\b", val) and "--gates" not in test


def test_eval_chooses_the_threshold_on_val_before_it_reports_on_test() -> None:
    """The test streams are report only: the threshold they are scored at was chosen on the val voices first."""
    text = eval_plan("eval")
    joined = text.replace("\\\n", " ")  # make -n keeps the recipe's line continuations
    commands = [line for line in joined.splitlines() if "train.evaluate" in line]
    assert len(commands) == 2, text
    val, test = commands
    assert "--split val" in val and "--target-fa-per-hour 0.5" in val
    assert "--split" not in test and "--out /tmp/kws-plan/eval " in test and "--target-fa-per-hour" not in test


def compress_command(*settings: str) -> str:
    text = dry_run("compress", "OUT=/tmp/kws-plan", *settings)
    assert "train.compress " in text, text
    return text.split("train.compress ", 1)[1]  # the command and what follows it in the plan


def test_the_quality_preset_gives_its_student_vtlp_and_the_budget_student_none() -> None:
    quality = compress_command("PRESET=quality")
    assert "--vtlp 0.5" in quality and "--student 'quality'" in quality
    assert "--vtlp" not in compress_command()
    assert "--vtlp" not in compress_command("PRESET=quality", "STUDENT_VTLP=")  # overridable


def test_a_verifier_size_reaches_only_the_verifier_teachers_which_then_train_apart_on_shared_data() -> None:
    config = '{"hidden_size": 128, "conv_channels": 16}'
    text = plan(f"VERIFIER_CONFIG={config}", "VERIFIER_SIZE=1")
    fits = re.findall(r"train\.fit [^&\n]*", text)
    # The compression teacher (issue 5's baseline) keeps the CRNN's own size; all three verifier teachers, the first
    # included, are trainings of their own with the size, on the student's clip set.
    assert "--model-config" not in fits[0] and all(f"--model-config '{config}'" in line for line in fits[1:])
    assert trainings(text) == [
        ("data_path.txt", "0", "crnn"), ("data_path.txt", "0", "verifier-crnn-seed0"),
        ("data_path.txt", "1", "verifier-crnn-seed1"), ("data_path.txt", "2", "verifier-crnn-seed2"),
    ]
    assert re.search(r"--members( +/tmp/kws-plan/train/verifier-crnn-seed[012]/best\.pt){3} ", text)
    assert "--model-config" not in plan("VERIFIER_CONFIG=")


def test_formant_warp_reaches_every_teacher_and_is_off_by_default() -> None:
    fits = re.findall(r"train\.fit [^&\n]*", plan("FORMANT_WARP=0.5"))
    assert len(fits) == 4 and all("--formant-warp 0.5" in line for line in fits)
    assert "--formant-warp" not in plan()


def test_verifier_gate_reaches_the_conversion_only_when_there_is_a_verifier() -> None:
    default = dry_run("convert", "OUT=/tmp/kws-plan")
    assert "--verifier /tmp/kws-plan/train/verifier/best.pt" in default and "--verifier-gate" not in default
    gated = dry_run("convert", "OUT=/tmp/kws-plan", "VERIFIER_GATE=0.3")
    assert re.search(r"--verifier /tmp/kws-plan/train/verifier/best\.pt +\\?\s*--verifier-gate 0\.3\b", gated)
    # Without a verifier there is no gate to set: the option stays off the command line.
    alone = dry_run("convert", "OUT=/tmp/kws-plan", "VERIFIER=", "VERIFIER_GATE=0.3")
    assert "-m convert" in alone and "--verifier" not in alone
