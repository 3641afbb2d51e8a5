"""`make edge-package` -> tarball; its install.sh (without system changes) installs into a fresh venv, and the
installed runtime prints its help and detects the keyword from the config it wrote. The interpreter choice by
machine and Python version is checked through install.sh itself."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import soundfile

from tests.test_run_cli import EDGE_PYTHON, RATE, assert_one_per_keyword, scene
from tests.tiny import REPO, shared_dscnn_bundle

PACKAGE_MEMBERS = {
    "kws-edge/install.sh",
    "kws-edge/kws-edge.service",
    "kws-edge/kws-edge.toml",
    "kws-edge/requirements-edge.txt",
    "kws-edge/docs/edge-device.md",
    "kws-edge/edge_runtime/__main__.py",
    "kws-edge/edge_runtime/runner.py",
    "kws-edge/bundle/manifest.json",
    "kws-edge/bundle/model_int8.tflite",
    "kws-edge/bundle/model_stream_int8.tflite",
}


def run(*command, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, command)), cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("package")
    result = run(
        "make", "--no-print-directory", "edge-package", f"BUNDLE={shared_dscnn_bundle()}", f"PACKAGE_DIR={out}"
    )
    assert result.returncode == 0, result.stderr
    return out / "kws-edge.tar.gz"


@pytest.fixture(scope="module")
def installed(package, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("device")
    with tarfile.open(package) as tar:
        tar.extractall(root, filter="data")
    prefix = root / "opt"
    python = Path(os.path.realpath(EDGE_PYTHON))  # the base interpreter behind the edge venv
    result = run(root / "kws-edge" / "install.sh", "--no-system", "--prefix", prefix, "--python", python)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installed in {prefix}" in result.stdout and "bench: rtf" in result.stderr
    return prefix


def test_package_holds_runtime_bundle_installer_unit_and_config(package):
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert names >= PACKAGE_MEMBERS
    assert not any("__pycache__" in name or name.endswith(".onnx") for name in names)
    unit = (REPO / "deploy" / "kws-edge.service").read_text()
    for line in ("Restart=on-failure", "User=@USER@", "SupplementaryGroups=audio", "run --config @CONFIG@"):
        assert line in unit


def test_installed_runtime_shows_help_and_detects_from_its_config(installed, tmp_path):
    python = installed / "venv" / "bin" / "python"
    help_result = run(python, "-m", "edge_runtime", "run", "--help", cwd=installed)
    assert help_result.returncode == 0 and "--on-detect" in help_result.stdout
    wav = tmp_path / "scene.wav"
    soundfile.write(wav, scene(), RATE, subtype="PCM_16")
    config = installed / "kws-edge.toml"
    assert f'model = "{installed}/bundle"' in config.read_text()
    result = run(python, "-m", "edge_runtime", "run", "--config", config, "--wav", wav, cwd=installed)
    assert result.returncode == 0, result.stderr
    records = [line for line in result.stdout.splitlines() if line]
    assert_one_per_keyword([json.loads(line) for line in records])
    assert (installed / "log" / "detections.jsonl").read_text().splitlines() == records


@pytest.mark.parametrize(
    ("machine", "python", "expected"),
    [
        ("aarch64", "3.11", ["numpy==2.2.6", "ai-edge-litert==2.1.0"]),
        ("aarch64", "3.13", ["numpy==2.2.6", "ai-edge-litert==2.1.0"]),
        ("x86_64", "3.10", ["tomli==2.2.1", "numpy==2.2.6", "ai-edge-litert==2.1.0"]),
        ("aarch64", "3.9", ["tomli==2.2.1", "tflite-runtime==2.14.0", "numpy==1.26.4"]),
    ],
)
def test_interpreter_package_is_chosen_by_machine_and_python(machine, python, expected):
    result = run("bash", REPO / "deploy" / "install.sh", "--print-requirements", "--machine", machine,
                 "--python-version", python)  # fmt: skip
    lines = result.stdout.split()
    assert result.returncode == 0 and lines[: len(expected)] == expected
    assert {"soundfile==0.13.1", "soxr==1.0.0", "pyaudio==0.2.14"} <= set(lines)


@pytest.mark.parametrize(
    ("machine", "python", "message"),
    [("armv7l", "3.11", "no TFLite interpreter wheels for machine 'armv7l'"), ("aarch64", "3.8", "Python 3.8")],
)
def test_unsupported_platform_is_one_error_line(machine, python, message):
    result = run("bash", REPO / "deploy" / "install.sh", "--print-requirements", "--machine", machine,
                 "--python-version", python)  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr


def test_uninstall_removes_the_install(package, tmp_path):
    prefix = tmp_path / "inst"
    (prefix / "venv").mkdir(parents=True)
    with tarfile.open(package) as tar:
        tar.extractall(tmp_path, filter="data")
    result = run(tmp_path / "kws-edge" / "install.sh", "--no-system", "--uninstall", "--prefix", prefix)
    assert result.returncode == 0 and not prefix.exists()
    refused = run(tmp_path / "kws-edge" / "install.sh", "--no-system", "--uninstall", "--prefix", "/usr")
    assert refused.returncode == 1 and "refusing to remove /usr" in refused.stderr
