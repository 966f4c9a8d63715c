"""``puffertrain bench --concurrent K``: K identical benchmarks at once against one alone.

Each benchmark is a separate ``puffertrain bench`` process, as K users' runs would be; the
summed SPS of the K at once is set against the SPS of one run alone measured just before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from puffertrain.bench import BenchConfig, write_results
from puffertrain.errors import UserError
from puffertrain.seeds import without_flags

_MEASURES = ("env_sps", "rollout_sps")


def _run(count: int, argv: list[str], folder: Path, tag: str) -> list[dict]:
    """Start ``count`` benchmarks together; return each one's first row."""
    outputs = [folder / f"{tag}-{index}.json" for index in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "puffertrain", "bench", *argv, "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for output in outputs
    ]
    for process in processes:
        _, errors = process.communicate()
        if process.returncode:
            raise UserError(f"a concurrent benchmark failed: {errors.strip().splitlines()[-1]}")
    return [json.loads(output.read_text())["rows"][0] for output in outputs]


def bench_concurrent(config: BenchConfig, argv: Sequence[str]) -> dict:
    """One benchmark alone, then ``config.concurrent`` at once; print and write the table."""
    if config.compare:
        raise UserError("--concurrent measures puffertrain's engine only; drop --compare")
    flags = without_flags(list(argv), {"--concurrent", "--output", "--compare"})
    count = config.concurrent
    with tempfile.TemporaryDirectory() as folder:
        alone = _run(1, flags, Path(folder), "alone")[0]
        together = _run(count, flags, Path(folder), "together")
    summed = {key: sum(row[key] for row in together) for key in _MEASURES}
    table = Table(title=f"{config.env}, {config.num_envs} envs: {count} benchmarks at once")
    for column in ("", "env-only SPS", "rollout SPS"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("one alone", *(f"{alone[key]:,.0f}" for key in _MEASURES))
    for index, row in enumerate(together):
        table.add_row(f"at once, #{index + 1}", *(f"{row[key]:,.0f}" for key in _MEASURES))
    table.add_row(f"{count} at once, summed", *(f"{summed[key]:,.0f}" for key in _MEASURES))
    table.add_row("summed / alone", *(f"{summed[key] / alone[key]:.2f}×" for key in _MEASURES))
    Console().print(table)
    results = {
        "command": "puffertrain bench " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "concurrent": count,
        "alone": alone,
        "together": together,
        "summed": summed,
    }
    write_results(results, config.output, f"{config.env.replace('/', '-')}__concurrent{count}")
    return results
