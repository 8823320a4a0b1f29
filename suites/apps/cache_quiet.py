"""Reference app (quiet): the good app's adaptive cache, printing no metric lines at all.

Metric lines are optional: it is certified on what it does (survive, grow, release,
bounded); its own view cannot be checked, so "track" is not applicable.
"""

from __future__ import annotations

from _memview import run
from cache_good import decide

if __name__ == "__main__":
    run(decide, quiet=True)
