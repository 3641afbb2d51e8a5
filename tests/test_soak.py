"""A short soak through the real processes: generator | `edge_runtime run --stdin`, twice fast and once paced."""

import json
import subprocess
import sys

from tests.tiny import REPO, make_tiny_clipset, shared_dscnn_bundle


def test_short_soak_is_repeatable_flat_in_memory_and_drops_nothing(tmp_path):
    clipset = make_tiny_clipset(tmp_path / "clips")
    out = tmp_path / "soak"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--model", str(shared_dscnn_bundle()), "--clipset", str(clipset),
         "--hours", "0.03", "--realtime-seconds", "4", "--out", str(out), "--train-python", sys.executable,
         "--threshold", "0.05"],  # the tiny model is barely trained: a low threshold gives detections to compare
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "soak_report.json").read_text())
    fast = report["fast"]
    assert report["passed"] and fast["identical_detections_in_two_runs"]
    assert fast["keywords_inserted"] > 0 and fast["detections"] > 0
    assert fast["rss"]["summaries"] >= 2 and fast["rss"]["growth_after_first_summary_mb"] <= 5.0
    assert fast["speed_x_real_time"] > 1.0 and fast["dropped_samples"] == 0
    assert report["realtime"]["dropped_samples"] == 0 and report["realtime"]["overflows"] == 0
    assert report["realtime"]["wall_seconds"] >= 3.0  # it really was paced
