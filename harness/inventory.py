"""The lab's host inventory (`dmh-hosts.toml`, or `[tool.dmh.hosts]` in pyproject.toml): per
host its URL, a credential *reference*, free labels, a memory budget for the harness's VMs, a
VM limit, the host reserve and a template per guest OS. What a host *is* (its Hyper-V version
and build) is read from the host, never typed here, so the file cannot lie about it.

    [hosts.lab-a]
    url = "https://hv-a.lab:5986"     # or a --dm-host URL: psrp://user@hv-a.lab:5986?auth=...
    credential = "env:DMH_LAB_A"      # env:NAME, keyring, or left out (as --dm-host)
    labels = ["gpu", "fast-disk"]
    budget_mb = 16384
    vm_limit = 8
    reserve_mb = 2048
    [hosts.lab-a.templates]
    linux = "C:\\\\VMs\\\\ubuntu.vhdx"

A credential is resolved only when a host is reached (`HostEntry.target`), so listing or
checking the file needs no secret; a secret written where the reference belongs is refused
without being echoed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from harness.config import ENVIRON, HostTarget, password_variable
from harness.errors import ConfigError, SettingError
from harness.settings import HostVersion

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

INVENTORY_FILE = "dmh-hosts.toml"
DEFAULT_RESERVE_MB = 2048  # host memory kept for the root partition (LISA's 2 GiB, ref. §3.8)
GUEST_OS = ("windows", "linux")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYS = ("url", "credential", "labels", "budget_mb", "vm_limit", "reserve_mb", "templates")
_READ_FROM_HOST = ("version", "build", "hyperv_version", "os_version")
_HIDDEN = "(value not shown)"


class InventoryError(SettingError, ConfigError):
    """A value in the inventory breaks a rule: names the file, the host, the key, the value
    and the rule (a credential's value is never shown). A usage error, like a bad option."""

    def __init__(self, source: str, host: str, key: str, value: object, rule: str) -> None:
        self.source = source
        self.host = host
        self.key = key
        where = f"{source}: host {host!r}" if host else source
        super().__init__(f"{where}, {key}" if key else where, value, rule)


@dataclass(frozen=True)
class HostEntry:
    """One host of the inventory, checked; `url` is a psrp:// URL as --dm-host takes it."""

    name: str
    url: str
    credential: str = ""  # "env:NAME", "keyring", or "" (resolved as --dm-host's)
    labels: tuple[str, ...] = ()
    budget_mb: int = 0
    vm_limit: int = 0
    reserve_mb: int = DEFAULT_RESERVE_MB
    templates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def label(self) -> str:
        """Secret-free: what logs and reports show (the host's name and where it is)."""
        return f"{self.name} ({_address(self.url)})"

    def template_for(self, guest_os: str) -> str | None:
        return self.templates.get(guest_os)

    def target(self, env: Mapping[str, str] = ENVIRON) -> HostTarget:
        """How to reach the host, its password resolved from the credential reference now;
        ConfigError names the host and the reference (never a secret)."""
        hostname = urlsplit(self.url).hostname or ""
        try:
            return HostTarget.parse(self.url, _CredentialEnv(env, self.credential, hostname))
        except ConfigError as exc:
            raise ConfigError(f"host {self.name!r}: {exc}") from None


class _CredentialEnv(Mapping[str, str]):
    """The environment as HostTarget.parse reads it, with the host's password variable taken
    from the credential reference: `env:NAME` (that variable), `keyring` (no variable: the
    keyring). Its repr shows nothing, like harness.config.ENVIRON."""

    def __init__(self, env: Mapping[str, str], credential: str, hostname: str) -> None:
        self._env = env
        self._override: dict[str, str] = {}
        if credential.startswith("env:"):
            name = credential.removeprefix("env:")
            if not env.get(name):
                raise ConfigError(f"credential {credential}: the variable {name} is not set")
            self._override[password_variable(hostname)] = env[name]
            self._override["DMH_HOST_PASSWORD"] = ""
        elif credential == "keyring":
            self._override[password_variable(hostname)] = ""
            self._override["DMH_HOST_PASSWORD"] = ""

    def __getitem__(self, key: str) -> str:
        if key in self._override:
            return self._override[key]
        return self._env[key]

    def __iter__(self) -> Iterator[str]:
        return iter({*self._env, *self._override})

    def __len__(self) -> int:
        return len({*self._env, *self._override})

    def __repr__(self) -> str:
        return "<process environment>"


@dataclass(frozen=True)
class Inventory:
    """The hosts of a lab, in the file's order."""

    hosts: tuple[HostEntry, ...]
    source: str = INVENTORY_FILE

    def __iter__(self) -> Iterator[HostEntry]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def named(self, name: str) -> HostEntry:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise ConfigError(f"{self.source}: no host {name!r} (there are: {known})")

    def matching(self, labels: Sequence[str] = (), guest_os: str = "") -> tuple[HostEntry, ...]:
        """The hosts with every label in `labels` and, if `guest_os` is given, a template for
        it (a test needs both: its VM is made from that template)."""
        return tuple(
            h
            for h in self.hosts
            if set(labels) <= set(h.labels) and (not guest_os or h.template_for(guest_os))
        )


def load_inventory(path: str | Path) -> Inventory:
    """The inventory in `path`: a dmh-hosts.toml (`[hosts.NAME]`), or a pyproject.toml's
    `[tool.dmh.hosts.NAME]`."""
    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InventoryError(source, "", "", "", "no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(source, "", "", "", f"cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(source, "", "", "", f"is not valid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        hosts = data.get("tool", {}).get("dmh", {}).get("hosts")
        if hosts is None:
            raise InventoryError(source, "", "[tool.dmh.hosts]", "missing", "no hosts table")
        return parse_inventory({"hosts": hosts}, source)
    return parse_inventory(data, source)


def parse_inventory(data: Mapping[str, Any], source: str = INVENTORY_FILE) -> Inventory:
    """Check a parsed inventory table by table; the first broken rule is an InventoryError."""
    unknown = sorted(set(data) - {"hosts"})
    if unknown:
        raise InventoryError(
            source, "", unknown[0], "a table", "only [hosts.NAME] tables belong here"
        )
    hosts = data.get("hosts")
    if not isinstance(hosts, Mapping) or not hosts:
        raise InventoryError(source, "", "hosts", "none", "list at least one host as [hosts.NAME]")
    return Inventory(tuple(_entry(source, name, table) for name, table in hosts.items()), source)


def _entry(source: str, name: str, table: Any) -> HostEntry:
    def fail(key: str, value: object, rule: str) -> InventoryError:
        return InventoryError(source, name, key, value, rule)

    if not _NAME.match(name):
        raise fail("", repr(name), "a host name is 1-40 letters, digits, '.', '_' or '-'")
    if not isinstance(table, Mapping):
        raise fail("", repr(table), "a host is a table: [hosts.NAME]")
    for key in table:
        if key in _READ_FROM_HOST:
            raise fail(key, repr(table[key]), "the Hyper-V version and build are read from the "
                       "host, never typed; remove this key")  # fmt: skip
        if key not in _KEYS:
            raise fail(key, repr(table[key]), f"unknown key; known: {', '.join(_KEYS)}")
    url = _url(table.get("url"), fail)
    credential = table.get("credential", "")
    if not isinstance(credential, str) or not (
        credential in ("", "keyring")
        or (credential.startswith("env:") and _ENV_NAME.match(credential[4:]))
    ):
        # Whatever is here may be the secret itself: never echo it.
        raise fail("credential", _HIDDEN, "a credential is a reference: env:VARIABLE or "
                   "keyring (the secret itself never belongs in the inventory)")  # fmt: skip
    labels = table.get("labels", [])
    if not isinstance(labels, list):
        raise fail("labels", repr(labels), 'labels are a list of strings: ["gpu", "fast-disk"]')
    for label in labels:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise fail("labels", repr(label), "a label is 1-63 letters, digits or ._:+-")
        if _is_version(label):
            raise fail("labels", repr(label), "the Hyper-V version is read from the host, "
                       "never typed as a label")  # fmt: skip
    if "budget_mb" not in table:
        raise fail("budget_mb", "missing", "say how much memory (MB) the harness's VMs may "
                   "reserve on this host in total")  # fmt: skip
    budget = _whole(table["budget_mb"], "budget_mb", 64, fail)
    vm_limit = _whole(table.get("vm_limit", 0), "vm_limit", 0, fail)
    reserve = _whole(table.get("reserve_mb", DEFAULT_RESERVE_MB), "reserve_mb", 0, fail)
    templates = table.get("templates", {})
    if not isinstance(templates, Mapping):
        raise fail("templates", repr(templates), "templates are a table: [hosts.NAME.templates]")
    for guest_os, path in templates.items():
        if guest_os not in GUEST_OS:
            raise fail(f"templates.{guest_os}", repr(path), f"a template is for one of "
                       f"{', '.join(GUEST_OS)}")  # fmt: skip
        if not isinstance(path, str) or not path.strip():
            raise fail(f"templates.{guest_os}", repr(path), "a template is a disk path on the host")
    return HostEntry(
        name=name,
        url=url,
        credential=credential,
        labels=tuple(labels),
        budget_mb=budget,
        vm_limit=vm_limit,
        reserve_mb=reserve,
        templates=MappingProxyType(dict(templates)),
    )


def _url(value: object, fail: Any) -> str:
    """A psrp:// URL from an http(s):// one (ssl from the scheme); passwords refused unshown."""
    if not isinstance(value, str) or not value:
        raise fail("url", repr(value), 'say where the host is: url = "https://host:5986"')
    try:
        parts = urlsplit(value)
        has_password = parts.password is not None
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise fail("url", _HIDDEN, "is not a URL, e.g. https://hv-a.lab:5986") from None
    if has_password:
        raise fail("url", _HIDDEN, "a URL must not hold a password; use credential = env:NAME")
    if parts.scheme not in ("psrp", "http", "https"):
        raise fail("url", repr(value), "a URL starts with https://, http:// or psrp://")
    if not parts.hostname:
        raise fail("url", repr(value), "the URL names no host")
    if parts.scheme == "psrp":
        return value
    query = parts.query
    if "ssl=" not in query:
        query = "&".join(
            filter(None, [query, f"ssl={'true' if parts.scheme == 'https' else 'false'}"])
        )
    path = parts.path.strip("/")
    if path and path != "wsman" and "path=" not in query:
        query += f"&path={path}"
    return f"psrp://{parts.netloc}?{query}"


def _whole(value: object, key: str, least: int, fail: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise fail(key, repr(value), f"must be a whole number ≥ {least}")
    return value


def _is_version(label: str) -> bool:
    text = label.lower().removeprefix("hyperv-").removeprefix("hyper-v-").removeprefix("ws")
    return any(text == v.value.lower() for v in HostVersion)


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_inventory(hosts: Sequence[HostEntry], comment: str = "") -> str:
    """An inventory file's text for `hosts` (what `dmh emulator serve --fleet` writes)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for host in hosts:
        lines += ["", f"[hosts.{host.name}]", f"url = {_toml_string(host.url)}"]
        if host.credential:
            lines.append(f"credential = {_toml_string(host.credential)}")
        lines.append("labels = [" + ", ".join(_toml_string(x) for x in host.labels) + "]")
        lines.append(f"budget_mb = {host.budget_mb}")
        lines.append(f"vm_limit = {host.vm_limit}")
        lines.append(f"reserve_mb = {host.reserve_mb}")
        if host.templates:
            lines.append(f"[hosts.{host.name}.templates]")
            lines += [f"{k} = {_toml_string(v)}" for k, v in host.templates.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
