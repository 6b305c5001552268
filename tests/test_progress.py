"""progress_bar: tqdm on a terminal, plain lines at intervals in a log file."""
import io
import sys

from tqdm import tqdm

from neurodsl.progress import LineWriter, progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_log_stream_gets_plain_lines_and_the_final_state():
    log = io.StringIO()
    bar = progress_bar(total=5, desc="fit", unit="epoch", file=log, interval=0, leave=False)
    for _ in range(5):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text and text.isascii()
    lines = text.splitlines()
    assert len(lines) == len(set(lines)) >= 2 and all(l.startswith("fit:") for l in lines)
    assert "5/5" in lines[-1]  # kept although leave=False: a log cannot clear a line


def test_interval_limits_the_lines():
    log = io.StringIO()
    bar = progress_bar(total=1000, file=log, interval=3600)
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 2 and "1000/1000" in lines[-1]  # the start and the end only


def test_stderr_is_the_default_stream(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setenv("NEURODSL_PROGRESS_INTERVAL", "0")
    with progress_bar(total=2, desc="sim") as bar:
        bar.update(2)
    assert "\r" not in log.getvalue() and "2/2" in log.getvalue().splitlines()[-1]


def test_terminal_gets_an_ordinary_tqdm():
    term = FakeTerminal()
    bar = progress_bar(total=3, file=term, mininterval=0)
    assert type(bar) is tqdm and not isinstance(bar.fp, LineWriter)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue()


def test_disabled_bar_writes_nothing():
    log = io.StringIO()
    with progress_bar(total=3, file=log, disable=True) as bar:
        bar.update(3)
    assert log.getvalue() == ""


def test_set_postfix_does_not_print_a_line_per_call():
    log = io.StringIO()
    bar = progress_bar(total=100, file=log, interval=3600)
    for i in range(100):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")  # refresh=True, as the runners call it
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) <= 2 and "100/100" in lines[-1] and "loss=0.010" in lines[-1]


def test_disabled_bar_accepts_postfix_and_write(capsys):
    """disable=True (progress off) in a log: set_postfix / update / close are silent no-ops."""
    bar = progress_bar(total=3, disable=True, file=io.StringIO())
    bar.update(1)
    bar.set_postfix(loss="1")
    bar.close()
