"""``loads``: strict JSON from the network, where whatever is not JSON is bad input (a ``ValueError``).

``json.loads`` differs from JSON in two ways that matter at an HTTP surface: it raises
``RecursionError`` (not ``ValueError``) on a body such as ``[[[[...]]]]`` a few thousand levels deep,
so a caller answering ``ValueError`` with a 400 answered that with a 500; and it accepts ``NaN``,
``Infinity`` and ``-Infinity``, which are not JSON: stored, they were served back as invalid JSON
(and sent on to apps whose SDKs cannot parse them).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_not_json)


def loads(data: str | bytes | bytearray) -> Any:
    """Strict ``json.loads``: ``ValueError`` for anything that is not JSON, deep nesting included."""
    if isinstance(data, (bytes, bytearray)):  # as json.loads decodes bytes
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
