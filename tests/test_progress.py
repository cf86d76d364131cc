"""Logs show progress while a job runs: `python -m uvlm` flushes each line as it is written,
and progress bars written to a file are lines of their own."""

import io
import select
import subprocess
import sys

from uvlm.progress import LineBar, progress_bar


def test_a_bar_in_a_file_writes_whole_lines():
    out = io.StringIO()
    bar = progress_bar(range(3), file=out, desc="encode", mininterval=0)
    assert isinstance(bar, LineBar)
    for _ in bar:
        bar.set_postfix(loss="0.5", refresh=False)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("encode:   0%") and lines[-2].startswith("encode: 100%")
    assert all(any(f" {i}/3 " in line for line in lines) for i in range(4))
    assert lines[-1] == ""  # tqdm ends its bar with a newline when it closes


def test_a_bar_in_a_file_waits_its_interval():
    out = io.StringIO()
    for _ in progress_bar(range(1000), file=out):  # default interval: LOG_INTERVAL
        pass
    assert len(out.getvalue().splitlines()) == 3  # start, end, newline at close


def test_the_entry_point_flushes_each_line_into_a_pipe():
    """Before a command starts, `python -m uvlm` makes stdout line-buffered: a line it prints
    reaches a log file (here a pipe) while the command still runs."""
    code = ("import sys; from uvlm.__main__ import show_progress_in_logs; "
            "show_progress_in_logs(); print('started'); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready and p.stdout.readline() == "started\n"
    finally:
        p.stdin.close()
        p.wait(timeout=60)
