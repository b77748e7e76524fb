"""The provenance (``meta``) of a pattern set: stored as JSON, and carried along when masks
are selected or paired with their complements (per-mask lists follow the masks, and
``selection`` records the indices into the set the selection chain started from)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from lsi_hw.errors import PatternError

__all__ = ["complemented_meta", "meta_to_json", "selected_meta"]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def meta_to_json(meta: Any) -> str:
    """``meta`` (a mapping, or None for ``{}``) as JSON; numpy scalars and arrays and paths
    are converted. PatternError when it is not a mapping or not JSON-serialisable."""
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise PatternError(f"meta must be a dict (JSON-serialisable); got {type(meta).__name__}")
    try:
        return json.dumps(dict(meta), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"meta must be JSON-serialisable: {exc}") from None


def selected_meta(meta: dict[str, Any], idx: np.ndarray, m: int, split: bool
                  ) -> dict[str, Any]:
    """``meta`` of the masks ``idx`` of an ``m``-mask set (changed in place and returned):
    per-mask lists follow the selection, ``selection`` maps back to the original set."""
    per_mask = meta.get("per_mask")
    if isinstance(per_mask, dict):
        meta["per_mask"] = {
            k: ([v[i] for i in idx] if isinstance(v, list) and len(v) == m else v)
            for k, v in per_mask.items()
        }
    prev = meta.get("selection")
    if isinstance(prev, list) and len(prev) == m:
        meta["selection"] = [prev[i] for i in idx]
    else:
        meta["selection"] = idx.tolist()
    meta["split"] = split
    return meta


def complemented_meta(meta: dict[str, Any], m: int) -> dict[str, Any]:
    """``meta`` of an ``m``-mask set interleaved with its complements (changed in place and
    returned): per-mask lists and the selection are repeated for each pair."""
    per_mask = meta.get("per_mask")
    if isinstance(per_mask, dict):
        meta["per_mask"] = {
            k: ([x for x in v for _ in (0, 1)] if isinstance(v, list) and len(v) == m else v)
            for k, v in per_mask.items()
        }
    sel = meta.get("selection")
    if isinstance(sel, list) and len(sel) == m:
        meta["selection"] = [x for x in sel for _ in (0, 1)]
    meta["complementary"] = True
    meta["split"] = True
    return meta
