"""The GPU check's logic, on the CPU: its dry run runs every step at tiny sizes and leaves one JSON per
step and a summary, so a run on a lent GPU (short and unrepeatable) does not fail on a script bug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_writes_every_step(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--dry-run", "-o", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = ["kernels", "nearest", "train_tiny", "paper_step", "throughput"]
    results = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in steps}
    assert all(r["status"] == "ok" for r in results.values()), results
    assert results["kernels"]["passed"] > 0 and results["kernels"].get("failed", 0) == 0
    assert results["nearest"]["table"][0].startswith("| N | K | D |")
    trained = {r["recipe"]: r for r in results["train_tiny"]["rows"]}
    assert (
        trained["vq16_tiny"]["finite"]
        and trained["vq16_tiny"]["last_loss"] < trained["vq16_tiny"]["first_loss"]
    )
    assert {r["model"] for r in results["paper_step"]["rows"]} == {"vq16_tiny", "biocodec_tiny"}
    assert all(r["encode"] > 0 and r["decode"] > 0 for r in results["throughput"]["rows"])
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"## {s}: ok" in summary for s in steps)


def test_a_failing_step_is_reported_and_the_rest_still_run(tmp_path: Path) -> None:
    """An unknown step is refused up front; a step that cannot run leaves its JSON with the failure."""
    bad = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_check.py",
            "--dry-run",
            "--steps",
            "kernels,warp",
            "-o",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "unknown steps ['warp']" in bad.stderr
