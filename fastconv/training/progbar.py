"""Keras-style progress bar.

verbose=1 on a terminal: one line redrawn in place with '\\r', e.g.
    ` 7/20 [=========>....................] - ETA: 1s - loss: 0.6931 - accuracy: 0.5000`
verbose=1 when stdout is not a terminal (logs, CI, notebooks captured to files), and verbose=2:
one line per epoch, written when the epoch ends:
    `20/20 - 1s - 52ms/step - loss: 0.6931 - accuracy: 0.5000`
Redraws are throttled to one per `interval` seconds (the final one is always written).
The values shown are the ones passed to `update` (the loop passes the running epoch means).
"""
import sys
import time


def format_value(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


def _duration(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    def __init__(self, target, width=30, verbose=1, interval=0.1, stream=None, unit_name="step"):
        self.target = target  # None when the number of steps is unknown
        self.width, self.verbose, self.interval = width, verbose, interval
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty())
        self.unit_name = unit_name
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._prev_len = 0
        self._done = False

    def _logs_text(self, values):
        return "".join(f" - {k}: {format_value(v)}" for k, v in (values or {}).items())

    def _bar(self, current):
        if self.target is None:
            return f"{current:7d}/Unknown"
        digits = len(str(self.target))
        head = f"{current:{digits}d}/{self.target}"
        filled = int(self.width * min(current, self.target) / self.target) if self.target else self.width
        arrow = ">" if 0 < filled < self.width else ("=" if filled else "")
        body = "=" * max(filled - 1, 0) + arrow
        return f"{head} [{body}{'.' * (self.width - len(body))}]"

    def update(self, current, values=None, finalize=False):
        """Show progress at step `current` with the given {name: value}; `finalize` ends the
        line (an epoch or evaluation finished)."""
        if not self.verbose or self._done:
            return
        now = time.monotonic()
        elapsed = now - self._start
        if finalize:
            self._done = True
        if self.verbose == 1 and self.dynamic:
            if not finalize and now - self._last_draw < self.interval:
                return
            self._last_draw = now
            line = self._bar(current)
            if finalize:
                line += f" - {_duration(elapsed)} {_per_step(elapsed / max(current, 1))}"
            elif self.target and current:
                eta = elapsed / current * (self.target - current)
                line += f" - ETA: {_duration(eta)}"
            line += self._logs_text(values)
            pad = " " * max(self._prev_len - len(line), 0)
            self._prev_len = len(line)
            self.stream.write("\r" + line + pad + ("\n" if finalize else ""))
            self.stream.flush()
        elif finalize:
            steps = f"{current}/{self.target}" if self.target else f"{current}"
            line = f"{steps} - {_duration(elapsed)} - {_per_step(elapsed / max(current, 1))}"
            self.stream.write(line + self._logs_text(values) + "\n")
            self.stream.flush()
