"""Durations ("90s", "15m", "12h", "30d") and daily time windows ("01:00-05:00", local time) of the tiering policy."""

import datetime
import re
from dataclasses import dataclass

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = 'a whole number followed by s, m, h or d, e.g. "90s", "15m", "12h", "30d"'
WINDOW_HELP = '"HH:MM-HH:MM" in local time, e.g. "01:00-05:00" (may wrap midnight: "22:00-06:00")'
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_WINDOW = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")


def parse_duration(text) -> int:
    """Seconds of a duration such as "90s"; raises ``ValueError`` naming what is allowed."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration; allowed: {DURATION_HELP}")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class Window:
    """A daily window from ``start`` to ``end`` minutes after local midnight; ``end < start`` wraps midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text) -> "Window":
        match = _WINDOW.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a window; allowed: {WINDOW_HELP}")
        hours1, minutes1, hours2, minutes2 = map(int, match.groups())
        if hours1 > 23 or hours2 > 23 or minutes1 > 59 or minutes2 > 59:
            raise ValueError(f"{text!r} is not a window: hours go from 00 to 23, minutes from 00 to 59")
        if (hours1, minutes1) == (hours2, minutes2):
            raise ValueError(f"{text!r} is an empty window; leave Window out to move at any time")
        return cls(hours1 * 60 + minutes1, hours2 * 60 + minutes2)

    def contains(self, moment: datetime.datetime) -> bool:
        """Whether ``moment`` (local time) is inside the window; the start is inside, the end is not."""
        minute = moment.hour * 60 + moment.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
