"""``loads``: JSON from the network, where nesting too deep for Python's parser is bad input too.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on a body such as ``[[[[...]]]]`` a few
thousand levels deep; callers that answer ``ValueError`` with a 400 would answer that with a 500.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads``, raising ``ValueError`` for any input it cannot decode, deep nesting included."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
