"""Plots the restart soak's samples (docs/benchmarks.md, "1000 in-process restarts").

Usage: python3 tests/soak_plot.py SAMPLES.csv OUT.png [TITLE]
SAMPLES.csv is what the restart test writes to MPC_SOAK_CSV:
cycle,rss_kib,threads,fds,memtable_kib (memtable_kib is empty before the first restart).
Needs matplotlib (python3 -m pip install matplotlib).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    samples, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "in-process restarts"
    with open(samples, newline="") as file:
        rows = [{key: float(value) if value else None for key, value in row.items()} for row in csv.DictReader(file)]
    cycles = [row["cycle"] for row in rows]
    figure, (memory, counts) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    memory.plot(cycles, [row["rss_kib"] / 1024 for row in rows], color="tab:blue", label="RSS")
    counted = [row for row in rows if row.get("memtable_kib") is not None]
    if counted:
        memory.plot(
            [row["cycle"] for row in counted],
            [(row["rss_kib"] - row["memtable_kib"]) / 1024 for row in counted],
            color="tab:green",
            label="RSS beyond the stores' memtables",
        )
        memory.legend()
    memory.set_ylabel("memory (MiB)")
    memory.set_ylim(bottom=0)
    memory.grid(True, alpha=0.3)
    memory.set_title(title)
    counts.plot(cycles, [row["threads"] for row in rows], label="threads")
    counts.plot(cycles, [row["fds"] for row in rows], label="file descriptors (no table files)")
    counts.set_xlabel("restart cycle")
    counts.set_ylim(bottom=0)
    counts.legend()
    counts.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
