"""The toolkit's folder in the user's cache: ``$XDG_CACHE_HOME/lsi-toolkit`` when
``XDG_CACHE_HOME`` is an absolute path, else ``~/.cache/lsi-toolkit``.

What lives there is made on this machine and can be deleted at any time (it is made again
when needed): per-machine kernel timings (``kernels-<machine>.json``), trained probes
(``probes/``) and trained SynthFace recognizers (``recognizer/``).  Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir(*parts: str) -> Path:
    """``<cache>/lsi-toolkit/<parts...>`` (not created); ``<cache>`` is ``$XDG_CACHE_HOME``
    when that is an absolute path (the XDG rule: a relative one is ignored), else
    ``~/.cache``.  Looked up at each call, so a changed environment takes effect."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root.joinpath("lsi-toolkit", *parts)
