"""Content identities: canonical JSON and the short hash a Job is known by."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Hex digits kept of the SHA-256 (64 bits: no collision in any realistic grid).
ID_LENGTH = 16


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace, ASCII only, no NaN: the same bytes everywhere."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def content_id(obj: Any, length: int = ID_LENGTH) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()[:length]
