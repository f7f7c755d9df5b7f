import io
from pathlib import Path

from interp.progress import LineBar, tqdm

PACKAGE = Path(__file__).resolve().parent.parent / "interp"


def test_a_bar_in_a_log_writes_short_lines_and_no_carriage_returns():
    log = io.StringIO()  # not a terminal, like a redirected stderr
    bar = tqdm(total=20_000, desc="student", unit="step", file=log, leave=False, mininterval=0)
    assert isinstance(bar, LineBar)
    for _ in range(20_000):
        bar.update()
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[-1].startswith("student: 100%") and "20000/20000" in lines[-1]
    assert max(map(len, lines)) < 120


def test_a_bar_in_a_log_writes_at_most_a_line_per_interval_and_the_last_count_once():
    log = io.StringIO()
    for _ in tqdm(range(5000), desc="data", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "5000/5000" in lines[1]  # the start and the end, nothing in between


def test_a_disabled_bar_writes_nothing():
    log = io.StringIO()
    for _ in tqdm(range(10), file=log, disable=True):
        pass
    assert log.getvalue() == ""


def test_every_module_takes_its_bars_from_interp_progress():
    direct = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "progress.py" and "from tqdm" in p.read_text()
    ]
    assert direct == []
