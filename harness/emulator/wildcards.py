"""The emulator's name for the shared wildcard rules (harness.wildcards), kept so existing
imports keep working; new code imports harness.wildcards."""

from __future__ import annotations

from harness.wildcards import has_wildcards, like, name_matches, wildcard_regex

__all__ = ["has_wildcards", "like", "name_matches", "wildcard_regex"]
