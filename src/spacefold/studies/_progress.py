"""Progress and plain words for the studies: one progress bar per stage, and why a trend is missing."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable


class StudyBars:
    """One progress bar per stage of a study, for all its runs together: ``training`` counts the
    epochs of every run to be trained, ``measuring`` the paths of every run to be measured.
    Nothing when ``enabled`` is false or tqdm is not installed. Log lines go through
    :meth:`log`, which passes them to ``log`` clear of the bars."""

    def __init__(self, enabled: bool, n_epochs: int, n_paths: int, log: Callable[[str], None]):
        self.train = self.measure = self.tqdm = None
        self._log = log
        if not enabled or n_epochs + n_paths == 0:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is an optional dependency
            return
        self.tqdm = tqdm
        # two bars on two lines need cursor movements, which a log file would keep as escape codes
        tty = sys.stderr.isatty()
        if n_epochs:
            self.train = tqdm(total=n_epochs, desc="training", unit="epoch", position=0 if tty else None)
        if n_paths:
            self.measure = tqdm(total=n_paths, desc="measuring", unit="path", position=1 if tty else None)

    def epoch(self, model, epoch: int, epochs: int) -> None:
        """``on_epoch_end`` of the training: one epoch more (records nothing)."""
        if self.train is not None:
            self.train.update(1)

    def add(self, epochs: int, paths: int) -> None:
        """Work done elsewhere (by another rank)."""
        if self.train is not None and epochs:
            self.train.update(epochs)
        if self.measure is not None and paths:
            self.measure.update(paths)

    def log(self, msg: str) -> None:
        if self.tqdm is None:
            self._log(msg)
            return
        with self.tqdm.external_write_mode(file=sys.stderr):
            self._log(msg)

    def close(self) -> None:
        for bar in (self.train, self.measure):
            if bar is not None:
                bar.close()


def trend_note(rows, kept, depths, rho: float, stat: str, min_accuracy: float) -> str | None:
    """Why a depth trend (:func:`spacefold.studies.depth.depth_trend`) has no medians or no rank
    correlation, in one sentence; ``None`` when it has both."""
    acc = f"test accuracy >= {min_accuracy:.2f}"
    if not rows:
        return "no run finished"
    if not kept:
        best = max(r["test_accuracy"] for r in rows)
        return (
            f"no run of {len(rows)} reached {acc} (the best reached {best:.4f}): train longer (more epochs) "
            "or lower the accuracy threshold"
        )
    if len(depths) < 2:
        return f"the {len(kept)} run(s) with {acc} all have depth {depths[0]}: a trend needs runs at two depths or more"
    if len(kept) < 3:
        return f"a rank correlation needs 3 runs or more with {acc}, got {len(kept)}"
    if math.isnan(rho):
        return f"{stat} is the same in every run with {acc}, so it has no rank correlation with depth"
    return None
