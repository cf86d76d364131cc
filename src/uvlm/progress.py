"""Progress bars that suit where the output goes.

On a terminal, tqdm redraws its bar in place. In a file (Snakemake sends every job's output
to its `log:`), a redrawn bar is one ever-growing line of carriage returns that `tail -f`
and editors show late or garbled; there :func:`progress_bar` writes the bar as a line of its
own instead, at most every ``LOG_INTERVAL`` seconds.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL = 60.0  # seconds between two progress lines in a log file


class LineBar(tqdm):
    """tqdm that writes each refresh as a new line (no carriage returns)."""

    monitor_interval = 0  # tqdm's monitor thread would refresh more often than mininterval

    @staticmethod
    def status_printer(file):
        def print_status(status: str) -> None:
            if status:  # tqdm clears its bar with an empty status; a log has nothing to clear
                file.write(status + "\n")
                file.flush()

        return print_status


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal, a :class:`LineBar` refreshed at most every
    ``LOG_INTERVAL`` seconds elsewhere. Update a postfix with ``refresh=False``, or every
    call writes a line."""
    file = kwargs.get("file") or sys.stderr
    if file.isatty():
        return tqdm(iterable, **kwargs)
    return LineBar(iterable, **{"mininterval": LOG_INTERVAL, **kwargs})
