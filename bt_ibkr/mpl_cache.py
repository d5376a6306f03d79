"""matplotlib's configuration and cache directory: a persistent, writable one, so its font list is
built once (a leaf: the tearsheet and its worker process both call it before matplotlib is
imported).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["matplotlib_cache_dir"]

_MPL_ENV = "MPLCONFIGDIR"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def matplotlib_cache_dir() -> Path | None:
    """Make sure matplotlib has a persistent, writable config/cache directory; return it.

    Leaves ``$MPLCONFIGDIR`` alone when set, and matplotlib's default (``~/.cache/matplotlib``,
    ``$XDG_CACHE_HOME``) when it is writable, returning None. Otherwise sets ``$MPLCONFIGDIR``
    (for this process and the ones it starts) to ``<user cache>/bt_ibkr/matplotlib`` or, failing
    that, ``<temp dir>/bt_ibkr-matplotlib-<uid>``, where the font list is built once and then
    reused, and returns that path. Call it before matplotlib is imported. Raises nothing.
    """
    if os.environ.get(_MPL_ENV):
        return None
    home = Path(os.path.expanduser("~"))
    xdg = os.environ.get("XDG_CACHE_HOME")
    user_cache = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"
    if _writable_dir(user_cache / "matplotlib"):
        return None  # matplotlib's own default works
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for candidate in (user_cache / "bt_ibkr" / "matplotlib",
                      Path(tempfile.gettempdir()) / f"bt_ibkr-matplotlib-{uid}"):
        if _writable_dir(candidate):
            os.environ[_MPL_ENV] = str(candidate)
            return candidate
    return None
