"""Print a Markdown table of the model directories written by scripts/smvae_cpu_runs.sh.

    python scripts/collect_runs.py models/smvae-cpu

Each row: test precision, recall and F1, per-type F1, best and last epoch, wall time
and peak memory (from the ``/usr/bin/time -v`` file beside each model directory).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def time_facts(path: Path) -> tuple[str, str]:
    """Wall time and peak RSS (MiB) from a ``/usr/bin/time -v`` report."""
    if not path.is_file():
        return "?", "?"
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return (wall.group(1) if wall else "?", f"{int(peak.group(1)) / 1024:.0f}" if peak else "?")


def main() -> None:
    root = Path(sys.argv[1])
    print(
        "| run | labelled | seed | P | R | F1 | PER | LOC | ORG | MISC | best / run epochs "
        "| wall (m:ss) | peak RSS (MiB) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in sorted(p for p in root.iterdir() if (p / "metrics.json").is_file()):
        m = json.loads((folder / "metrics.json").read_text())
        wall, peak = time_facts(root / f"{folder.name}.time")
        scores = " | ".join(
            f"{m[key]:.2f}"
            for key in (
                "test_precision",
                "test_recall",
                "test_f1",
                "test_f1_PER",
                "test_f1_LOC",
                "test_f1_ORG",
                "test_f1_MISC",
            )
        )
        print(
            f"| {folder.name} | {m['labelled_count']} | {m['seed']} | {scores} "
            f"| {m['best_epoch']} / {m['epochs_run']} | {wall} | {peak} |"
        )


if __name__ == "__main__":
    main()
