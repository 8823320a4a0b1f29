"""How the app under test reports its own view of memory: JSON lines or a regex on its output.

JSON lines: `{"metric": "total_mb", "value": 4096}` (other lines are ignored).
Regex: a pattern with named groups `metric` and `value`, or with one group `value` and a
fixed metric name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Protocol


class Probe(Protocol):
    def parse(self, lines: Iterable[str]) -> dict[str, float]:
        """Metric values found in these output lines, the last value of each winning."""


class JsonLinesProbe:
    def parse(self, lines: Iterable[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("metric"), str):
                value = record.get("value")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    found[record["metric"]] = float(value)
        return found


class RegexProbe:
    def __init__(self, pattern: str, metric: str | None = None) -> None:
        self.pattern = re.compile(pattern)
        groups = self.pattern.groupindex
        if "value" not in groups or ("metric" not in groups and metric is None):
            raise ValueError(
                f"probe pattern {pattern!r} needs a (?P<value>...) group and either a "
                "(?P<metric>...) group or a fixed metric name"
            )
        self.metric = metric

    def parse(self, lines: Iterable[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for line in lines:
            match = self.pattern.search(line)
            if match:
                name = self.metric or match["metric"]
                try:
                    found[name] = float(match["value"])
                except ValueError:
                    continue
        return found
