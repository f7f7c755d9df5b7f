"""Progress bars that suit where the output goes: tqdm's bar in a terminal, its widget in a
notebook, and in a log (output that is not a terminal) one short line per update, at most every
`LOG_INTERVAL_S` seconds, instead of thousands of carriage-return updates on one line."""

from __future__ import annotations

import sys

from tqdm.std import tqdm as _std

LOG_INTERVAL_S = 30.0  # a line per bar at most this often in a log (and one when the bar closes)


class LineBar(_std):
    """A tqdm bar that writes each update as its own line (for logs and pipes)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs["leave"] = False  # close() writes the final line itself, not a carriage return
        kwargs.setdefault("ascii", True)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing the bar: nothing to clear in a log
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        self._shown = self.n
        return True

    def close(self):
        if not self.disable and self.n != getattr(self, "_shown", None):
            self.display()  # the final count and rate, once
        super().close()


def _isatty(fp) -> bool:
    try:
        return bool(fp.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm(*args, **kwargs):
    """Drop-in for `tqdm.auto.tqdm`: the widget in a notebook, the bar in a terminal, a `LineBar`
    when the output (`file`, default stderr) is not a terminal."""
    from tqdm.autonotebook import tqdm as auto

    if auto is not _std:  # an IPython kernel: ipywidgets render the bar
        return auto(*args, **kwargs)
    if _isatty(kwargs.get("file") or sys.stderr):
        return _std(*args, **kwargs)
    return LineBar(*args, **kwargs)
