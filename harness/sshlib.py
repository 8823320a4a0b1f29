"""asyncssh, imported without the warnings its DSA support prints with today's cryptography.

asyncssh (2.24.1, its newest release) names cryptography's DSA classes at import time, and
cryptography 51 deprecates DSA: each name printed a `CryptographyDeprecationWarning`, ten
lines that were the first of `dmh emulator serve` (before its endpoint URL) and five warnings
in every pytest summary. No asyncssh release avoids them, and holding cryptography below 51
would hold back a security library, so this filter, scoped to the import, ignores exactly
that warning when asyncssh's own modules raise it; every other warning, and this one from
any other code, still shows.

The SSH guest channel (`harness.hyperv.ssh`) and the emulator's SSH endpoints
(`harness.emulator.ssh`) both import asyncssh from here.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message="DSA is deprecated",
        category=CryptographyDeprecationWarning,
        module=r"asyncssh\.",
    )
    import asyncssh

__all__ = ["asyncssh"]
