"""Settings of `run`, named once: each has a config-file key, a command-line flag, a type, a default and a help text.

Precedence: command line, then the config file (`--config FILE`, TOML), then the default here; detection
settings left unset everywhere come from the bundle's manifest. `deploy/kws-edge.toml` is the example config with
every key commented (a test checks it names every key below).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: install.sh adds the tomli backport there
    import tomli as tomllib

from .errors import KwsError
from .interpreter import DEFAULT_THREADS
from .microphone import DEFAULT_RETRY_INITIAL_S, DEFAULT_RETRY_MAX_S

DEFAULT_SUMMARY_SECONDS = 60.0
DEFAULT_STDIN_CHANNELS = 1
FROM_MANIFEST = "from the manifest"


@dataclass(frozen=True)
class Setting:
    key: str  # config-file key
    flag: str  # command-line flag
    kind: type  # str, int, float, bool or list (of strings)
    default: object
    help: str
    metavar: str | None = None
    minimum: float | None = None  # numbers: smallest allowed value
    positive: bool = False  # numbers: must be > minimum (not >=)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model",
        "--model",
        str,
        None,
        "model bundle: a folder holding manifest.json, or the manifest itself (required here or in the config file)",
        "BUNDLE",
    ),
    Setting("wav", "--wav", str, None, "read this WAV file instead of the microphone", "FILE"),
    Setting(
        "stdin",
        "--stdin",
        bool,
        False,
        "read raw signed 16-bit little-endian PCM from standard input instead "
        "of the microphone (e.g. arecord -f S16_LE -r 16000 -c 1 -t raw | ...)",
    ),
    Setting(
        "stdin_rate",
        "--stdin-rate",
        int,
        None,
        "sample rate of the PCM on standard input, Hz (default: the model's rate, 16000 for the default front-end)",
        "HZ",
        1,
    ),
    Setting(
        "stdin_channels",
        "--stdin-channels",
        int,
        DEFAULT_STDIN_CHANNELS,
        "interleaved channels of the PCM on standard input; they are averaged",
        "N",
        1,
    ),
    Setting(
        "device",
        "--device",
        str,
        None,
        "microphone: a PortAudio device index, or part of its name "
        "(default: the system's default input; see --list-devices)",
        "INDEX|NAME",
    ),
    Setting(
        "mic_rate",
        "--mic-rate",
        int,
        None,
        "open the microphone at this rate instead of the model's (default: "
        "the model's rate if the device takes it, else the device's native rate; resampled with soxr)",
        "HZ",
        1,
    ),
    Setting(
        "threshold",
        "--threshold",
        float,
        None,
        f"smoothed keyword probability that fires a detection, 0..1; with a verifier, its mean probability "
        f"(default: {FROM_MANIFEST}, detection.threshold, or verifier.threshold for a two-stage bundle)",
        "P",
        0.0,
    ),
    Setting(
        "refractory_seconds",
        "--refractory",
        float,
        None,
        f"seconds after a detection in which no new one fires (default: {FROM_MANIFEST}, detection.refractory_seconds)",
        "SECONDS",
        0.0,
    ),
    Setting(
        "smoothing_seconds",
        "--smoothing",
        float,
        None,
        f"moving-average window of the keyword probability, "
        f"seconds; 0 = no smoothing (default: {FROM_MANIFEST}, streaming.smoothing_seconds)",
        "SECONDS",
        0.0,
    ),
    Setting(
        "no_verifier",
        "--no-verifier",
        bool,
        False,
        "score with the streaming model alone even when the bundle has a verifier (the second stage); the "
        "threshold is then detection.threshold: fewer MACs, more misses at the same false-accept rate",
    ),
    Setting("threads", "--threads", int, DEFAULT_THREADS, "interpreter threads", "N", 1),
    Setting(
        "duration_seconds",
        "--duration",
        float,
        None,
        "stop after this much audio, seconds (default: run until the input ends or SIGTERM/SIGINT)",
        "SECONDS",
        0.0,
        positive=True,
    ),
    Setting("log_file", "--log-file", str, None, "also append each detection's JSON line to this file", "FILE"),
    Setting(
        "latency_log", "--latency-log", str, None, "append each latency summary as a JSON line to this file", "FILE"
    ),
    Setting(
        "summary_seconds",
        "--summary-seconds",
        float,
        DEFAULT_SUMMARY_SECONDS,
        "write a latency summary every this many seconds of audio, and at exit; 0 = only at exit",
        "SECONDS",
        0.0,
    ),
    Setting(
        "retry_initial_seconds",
        "--retry-initial",
        float,
        DEFAULT_RETRY_INITIAL_S,
        "first wait before reopening a lost microphone, seconds; doubles on each failure",
        "SECONDS",
        0.0,
        positive=True,
    ),
    Setting(
        "retry_max_seconds",
        "--retry-max",
        float,
        DEFAULT_RETRY_MAX_S,
        "longest wait between attempts to reopen a lost microphone, seconds",
        "SECONDS",
        0.0,
        positive=True,
    ),
    Setting(
        "on_detect",
        "--on-detect",
        list,
        [],
        "command run on each detection, with its arguments, without a "
        "shell; it gets KWS_KEYWORD, KWS_SCORE, KWS_TIME_S and KWS_UTC in its environment. On the command line "
        "it must come last: everything after it belongs to the command",
        "CMD ARG",
    ),
)
BY_KEY = {setting.key: setting for setting in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting as an option whose unset value is None (so the config file and the manifest can fill it)."""
    for setting in SETTINGS:
        default_text = "" if "(default:" in setting.help else f" (default: {_default_text(setting)})"
        if setting.kind is bool:
            parser.add_argument(
                setting.flag, dest=setting.key, action="store_true", default=None, help=setting.help + default_text
            )
        elif setting.kind is list:
            parser.add_argument(
                setting.flag,
                dest=setting.key,
                nargs=argparse.REMAINDER,
                default=None,
                metavar=setting.metavar,
                help=setting.help + default_text,
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.key,
                type=_parser_for(setting),
                default=None,
                metavar=setting.metavar,
                help=setting.help + default_text,
            )


def _default_text(setting: Setting) -> str:
    if setting.kind is bool:
        return "off"
    if setting.kind is list:
        return "none"
    return (
        "none"
        if setting.default is None
        else f"{setting.default:g}"
        if isinstance(setting.default, float)
        else str(setting.default)
    )


def _parser_for(setting: Setting):
    def parse(text: str):
        try:
            value = setting.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {setting.kind.__name__}, got {text!r}") from None
        problem = _range_problem(setting, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _range_problem(setting: Setting, value) -> str | None:
    if setting.minimum is None or setting.kind not in (int, float):
        return None
    if setting.positive and not value > setting.minimum:
        return f"must be > {setting.minimum:g}, got {value}"
    if not value >= setting.minimum:
        return f"must be >= {setting.minimum:g}, got {value}"
    if setting.key == "threshold" and not value <= 1.0:
        return f"must be in 0..1, got {value}"
    return None


def read_config(path: str | Path) -> dict:
    """The config file's values, checked: known keys only, each of its setting's type and range."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KwsError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise KwsError(f"config file {path} cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise KwsError(f"config file {path} is not valid TOML ({error})") from None
    unknown = sorted(set(values) - set(BY_KEY))
    if unknown:
        raise KwsError(f"config file {path}: unknown keys {unknown}; allowed: {', '.join(BY_KEY)}")
    for key, value in values.items():
        problem = _type_problem(BY_KEY[key], value) or _range_problem(BY_KEY[key], value)
        if problem:
            raise KwsError(f"config file {path}: '{key}' {problem}")
    return values


def _type_problem(setting: Setting, value) -> str | None:
    kind = setting.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return None
    if kind is list:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    else:
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    return None if ok else f"must be {'a list of strings' if kind is list else kind.__name__}, found {value!r}"


def resolve(args: argparse.Namespace, config: dict) -> dict:
    """Each setting's value: command line, else config file, else default."""
    resolved = {}
    for setting in SETTINGS:
        given = getattr(args, setting.key, None)
        if setting.kind is list and given == []:
            raise KwsError(f"{setting.flag} needs a command")
        value = given if given is not None else config.get(setting.key, setting.default)
        resolved[setting.key] = float(value) if setting.kind is float and value is not None else value
    if resolved["wav"] and resolved["stdin"]:
        raise KwsError("--wav and --stdin both given; choose one source (neither: the microphone)")
    if not resolved["model"]:
        raise KwsError("no model bundle: pass --model BUNDLE or set 'model' in the config file")
    return resolved
