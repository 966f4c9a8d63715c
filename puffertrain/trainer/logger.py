"""TensorBoard scalars with CleanRL's tags, and the live terminal progress display."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from puffertrain.engine import Episode
from puffertrain.trainer.evaluation import EvalResult, write_video


class RunLogger:
    """Writes TensorBoard events into the run dir and keeps a progress bar up to date.

    ``purge_step`` is the first step a resumed run will log: TensorBoard drops events at or
    after it that an interrupted run wrote past its last checkpoint, so curves never overlap.
    ``enabled=False`` (ranks other than 0 of a torchrun job) writes and shows nothing.
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        total_steps: int,
        start_step: int,
        purge_step: int | None = None,
        recent: int = 20,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.writer = (
            SummaryWriter(str(run_dir), purge_step=purge_step, flush_secs=10) if enabled else None
        )
        if self.writer is not None and purge_step is None:
            self.writer.add_text("config", "```json\n" + json.dumps(config, indent=2) + "\n```")
        self.recent_scores: deque[float] = deque(maxlen=recent)
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} steps"),
            TextColumn("{task.fields[sps]:,.0f} SPS"),
            TextColumn("return {task.fields[score]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "training", total=total_steps, completed=start_step, sps=0.0, score="–"
        )
        self._last_print = 0.0
        self._start_time = time.perf_counter()
        self._start_step = start_step

    def __enter__(self) -> RunLogger:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.writer is not None:
            self.writer.close()

    def _scalar(self, tag: str, value: float, global_step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, global_step)

    def episode(self, global_step: int, episode: Episode) -> None:
        """Log a finished episode (a multi-agent one: the mean over agents, and each agent's)."""
        self._scalar("charts/episodic_return", episode.score, global_step)
        self._scalar("charts/episodic_length", episode.length, global_step)
        for agent, score in (episode.agent_scores or {}).items():
            self._scalar(f"agents/{agent}/episodic_return", score, global_step)
        self.recent_scores.append(episode.score)

    @property
    def mean_recent_score(self) -> float | None:
        if not self.recent_scores:
            return None
        return sum(self.recent_scores) / len(self.recent_scores)

    def update(
        self,
        global_step: int,
        learning_rate: float,
        stats: dict[str, float],
        time_shares: dict[str, float],
    ) -> float:
        """Log one update's statistics; return the SPS since this process started training."""
        elapsed = time.perf_counter() - self._start_time
        sps = (global_step - self._start_step) / max(elapsed, 1e-9)
        self._scalar("charts/learning_rate", learning_rate, global_step)
        self._scalar("charts/SPS", sps, global_step)
        for key, value in stats.items():
            self._scalar(f"losses/{key}", value, global_step)
        for phase, share in time_shares.items():
            self._scalar(f"perf/{phase}_fraction", share, global_step)
        mean = self.mean_recent_score
        score = "–" if mean is None else f"{mean:.1f}"
        self.progress.update(self.task, completed=global_step, sps=sps, score=score)
        if (
            self.enabled
            and not self.console.is_terminal
            and time.perf_counter() - self._last_print > 10
        ):
            self._last_print = time.perf_counter()
            self.console.print(f"step {global_step:,}  SPS {sps:,.0f}  return {score}")
        return sps

    def evaluation(self, global_step: int, result: EvalResult, run_dir: Path, fps: float) -> None:
        """Log an evaluation's scalars, and its video if it recorded one (an mp4 in videos/ of
        the run dir, and an animated GIF in TensorBoard's images tab)."""
        for tag, value in result.scalars().items():
            self._scalar(tag, value, global_step)
        self.flush()  # on disk at once: a sweep prunes on them while the run goes
        if self.enabled:
            self.console.print(
                f"eval at step {global_step:,}: return {result.mean:.2f} "
                f"over {len(result.returns)} episodes"
            )
        if self.writer is None or not result.frames:
            return
        path = run_dir / "videos" / f"eval_{global_step:012d}.mp4"
        gif = write_video(path, result.frames, fps)
        height, width, channels = result.frames[0].shape
        image = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=gif
        )
        summary = Summary(value=[Summary.Value(tag="eval/video", image=image)])
        self.writer._get_file_writer().add_summary(summary, global_step)

    def flush(self) -> None:
        """Put every logged event on disk (done with each checkpoint)."""
        if self.writer is not None:
            self.writer.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, soft_wrap=True)
