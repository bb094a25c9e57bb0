"""Reading a Python traceback (an error's ``stack``): its frames, the user's own told apart from
eagerstep's, the standard library's and installed packages'."""

from __future__ import annotations

import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')
_EAGERSTEP_DIR = str(Path(__file__).resolve().parents[2])
_LIBRARY_DIRS = tuple(
    {p for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_path(key))}
)


@dataclass
class Frame:
    file: str
    line: int
    function: str
    code: str
    user: bool


@dataclass
class Stack:
    frames: list[Frame]
    summary: str  # the last line(s): "ValueError: bad total"
    text: str  # the traceback as the app sent it

    @property
    def user_frames(self) -> list[Frame]:
        return [f for f in self.frames if f.user]

    @property
    def library_frames(self) -> list[Frame]:
        return [f for f in self.frames if not f.user]


def is_user_file(path: str) -> bool:
    """False for eagerstep itself, the standard library, installed packages and ``<frozen ...>``."""
    if path.startswith("<") or "site-packages" in path or "dist-packages" in path:
        return False
    return not path.startswith((_EAGERSTEP_DIR + "/", *(d + "/" for d in _LIBRARY_DIRS)))


def _is_message(line: str) -> bool:
    """Not blank, not a ``^^^^`` marker line, not the "Traceback" header."""
    text = line.strip()
    return bool(text) and not set(text) <= set("^~ ") and not text.startswith("Traceback (most recent")


def parse(text: str) -> Stack:
    """The frames of a traceback as ``traceback.format_exception`` writes it (chained exceptions:
    the frames of all, in order); text that is not a Python traceback gives no frames."""
    frames: list[Frame] = []
    tail: list[str] = []
    lines = text.rstrip().splitlines()
    index = 0
    while index < len(lines):
        match = _FRAME.match(lines[index])
        if match is not None:
            code = ""
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if following.startswith("    ") and not _FRAME.match(following):
                code = following.strip()
                index += 1
            file = match["file"]
            frames.append(Frame(file, int(match["line"]), match["func"], code, is_user_file(file)))
            tail = []
        elif _is_message(lines[index]):
            tail.append(lines[index])
        index += 1
    return Stack(frames, "\n".join(tail).strip(), text)
