"""The catalogue's entries are checked when read: a bad file is refused naming it, the key
and the rule, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.catalog import load_catalog
from harness.errors import ConfigError
from tests.embedded import REPO

GOOD = """
package = "redis-server"
command = "redis-server --port 6379"
view = "redis"
load = "redis-benchmark -q -n 1000"
expect = ["survive", "track"]
why = "A service."
"""


def test_the_shipped_catalogue_reads() -> None:
    entries = {e.name: e for e in load_catalog(REPO / "suites" / "catalog")}
    assert entries["redis"].expect == ("survive", "track", "bounded", "limits")
    assert entries["memcached"].view == "memcached"
    # Every program is judged while a load exercises it.
    assert all(e.load for e in entries.values())


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (("why", "colour = 'red'"), r"unknown keys \['colour'\], missing keys \['why'\]"),
        (('expect = ["survive", "track"]', 'expect = ["fast"]'), "'fast'.*must be one of"),
        (('view = "redis"', 'view = "redis host=db"'), "'host' is no setting of the 'redis'"),
        (("why =", 'backend = "kvm"\nwhy ='), "'kvm' is not allowed: must be one of"),
        (
            ('view = "redis"', "view = 'curl -s localhost'\nview_patterns = ['(?P<mb>x']"),
            "is no regex",
        ),
        (("package", "package = [\npackage"), "not TOML"),
        (('load = "redis-benchmark -q -n 1000"\n', ""), r"missing keys \['load'\]"),
        (("-n 1000", "-p {port}"), "may use only the placeholder {pid}"),
    ],
)
def test_a_bad_entry_is_refused_naming_its_file_and_rule(
    tmp_path: Path, change: tuple[str, str], error: str
) -> None:
    text = GOOD.replace(*change) if change[0] != "why" else GOOD.split("why")[0] + change[1]
    (tmp_path / "broken.toml").write_text(text)
    with pytest.raises(ConfigError, match=error) as refused:
        load_catalog(tmp_path)
    assert str(tmp_path / "broken.toml") in str(refused.value)
