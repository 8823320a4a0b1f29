"""Host targets: a Hyper-V host is a URL, credentials come from the environment or keyring.

    psrp://user@hyperv01.lab:5986?auth=negotiate&cert_validation=/path/ca.pem

Passwords never sit in the URL (one there is refused, without echoing the URL). They come
from `DMH_HOST_PASSWORD_<HOST>` (the hostname in upper case, non-alphanumerics as `_`), then
`DMH_HOST_PASSWORD`, then `keyring` (service "dm-harness", user "user@host") when it is
installed. The username may also come from `DMH_HOST_USERNAME`. A target's `label`
(`psrp://hyperv01.lab:5986`) is what logs, test ids and reports show.

`auth=basic` over plain HTTP sends the password in clear text: refused unless the host is
loopback or the URL says `allow_insecure=true`.

Tracebacks: pytest's long tracebacks print every frame's arguments (and, with `-l`, its
locals). So the process environment is never an argument or a local here (`ENVIRON` is a view
whose repr shows no values) and a password is a `Secret` from the moment it is read.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from harness.errors import ConfigError

AUTHS = ("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate")
_OPTIONAL_AUTH = {
    # auth → (module that must import, extra that installs it)
    "kerberos": ("krb5", "kerberos"),
    "credssp": ("requests_credssp", "credssp"),
}
_QUERY_KEYS = {
    "auth",
    "ssl",
    "port",
    "cert_validation",
    "read_timeout",
    "operation_timeout",
    "configuration_name",
    "path",
    "certificate_pem",
    "certificate_key_pem",
    "allow_insecure",
}


class _Environ(Mapping[str, str]):
    """The process environment, read on demand; its repr shows no names or values, so a
    traceback that prints it as an argument shows nothing secret."""

    def __getitem__(self, key: str) -> str:
        return os.environ[key]

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)

    def __repr__(self) -> str:
        return "<process environment>"


ENVIRON: Mapping[str, str] = _Environ()


class Secret:
    """A string that never prints itself: repr, str and format all show '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class HostTarget:
    """Where and how to reach one Hyper-V host (or a guest, for the WinRM guest channel)."""

    hostname: str
    port: int
    username: str
    password: Secret = field(repr=False)
    auth: str = "negotiate"
    ssl: bool = True
    cert_validation: bool | str = True
    read_timeout: float = 30.0
    operation_timeout: int = 20
    configuration_name: str = "Microsoft.PowerShell"
    path: str = "wsman"
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None

    @property
    def label(self) -> str:
        """The stable, secret-free name used in test ids, logs and reports."""
        return f"psrp://{self.hostname}:{self.port}"

    @property
    def encryption(self) -> str:
        # Basic over plain HTTP has no message encryption; pypsrp refuses it under 'auto'.
        return "never" if not self.ssl and self.auth in ("basic", "certificate") else "auto"

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, url: str, env: Mapping[str, str] = ENVIRON) -> HostTarget:
        """Parse a `psrp://` URL; refuse passwords in it, unknown options, and Basic auth in
        clear text over the network."""
        try:
            parts = urlsplit(url)
            has_password = parts.password is not None
        except ValueError:  # e.g. an unbalanced '[': say so without echoing the URL
            raise ConfigError("host URL is not a URL, e.g. psrp://user@hyperv01.lab") from None
        if has_password:
            raise ConfigError(
                "host URL must not contain a password; set DMH_HOST_PASSWORD_<HOST> or "
                "DMH_HOST_PASSWORD, or use keyring (service 'dm-harness')"
            )
        if parts.scheme != "psrp":
            raise ConfigError(f"host URL must start with psrp://, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigError("host URL has no hostname, e.g. psrp://user@hyperv01.lab")
        hostname = parts.hostname
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - _QUERY_KEYS)
        if unknown:
            known = ", ".join(sorted(_QUERY_KEYS))
            raise ConfigError(f"host URL option {unknown[0]!r} is unknown; known: {known}")
        auth = query.get("auth", "negotiate").lower()
        if auth not in AUTHS:
            raise ConfigError(f"auth={auth!r} is not supported; use one of {', '.join(AUTHS)}")
        _check_auth_installed(auth)
        ssl = _bool(query.get("ssl", "true"), "ssl")
        insecure_ok = _bool(query.get("allow_insecure", "false"), "allow_insecure")
        if auth == "basic" and not ssl and not _is_loopback(hostname) and not insecure_ok:
            raise ConfigError(
                f"auth=basic with ssl=false would send the password to {hostname} in clear "
                "text: use TLS (ssl=true), another auth, or add allow_insecure=true"
            )
        port = _port(query.get("port"), parts, 5986 if ssl else 5985)
        username = unquote(parts.username or "") or env.get("DMH_HOST_USERNAME", "")
        if auth != "certificate" and not username:
            raise ConfigError(
                f"no username for {hostname}: write psrp://user@{hostname} or set DMH_HOST_USERNAME"
            )
        password = Secret("") if auth == "certificate" else find_password(hostname, username, env)
        if auth != "certificate" and not password:
            raise ConfigError(
                f"no password for {username}@{hostname}: set {password_variable(hostname)} or "
                "DMH_HOST_PASSWORD, or store it with keyring (service 'dm-harness')"
            )
        return cls(
            hostname=hostname,
            port=port,
            username=username,
            password=password,
            auth=auth,
            ssl=ssl,
            cert_validation=_cert_validation(query.get("cert_validation", "true")),
            read_timeout=_number(query, "read_timeout", 30.0),
            operation_timeout=int(_number(query, "operation_timeout", 20)),
            configuration_name=query.get("configuration_name", "Microsoft.PowerShell"),
            path=query.get("path", "wsman").strip("/"),
            certificate_pem=query.get("certificate_pem"),
            certificate_key_pem=query.get("certificate_key_pem"),
        )


def password_variable(hostname: str) -> str:
    """The per-host password variable, e.g. DMH_HOST_PASSWORD_HYPERV01_LAB."""
    return "DMH_HOST_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", hostname.upper())


def find_password(hostname: str, username: str, env: Mapping[str, str] = ENVIRON) -> Secret:
    """The host password from the environment or keyring; a Secret as soon as it is read."""
    for name in (password_variable(hostname), "DMH_HOST_PASSWORD"):
        if env.get(name):
            return Secret(env[name])
    if importlib.util.find_spec("keyring") is not None:
        import keyring

        return Secret(keyring.get_password("dm-harness", f"{username}@{hostname}") or "")
    return Secret("")


def _is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(text: str | None, parts: SplitResult, default: int) -> int:
    """The port= option, else the URL's port, else the default; always within 1-65535."""
    try:
        port = int(text) if text else (parts.port or default)
    except ValueError:
        shown = text if text else "in the URL"
        raise ConfigError(f"port must be a number from 1 to 65535, got {shown!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"port must be a number from 1 to 65535, got {port}")
    return port


def _check_auth_installed(auth: str) -> None:
    if auth in _OPTIONAL_AUTH:
        module, extra = _OPTIONAL_AUTH[auth]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"auth={auth} needs an optional package: pip install 'dm-harness[{extra}]'"
            )


def _bool(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _cert_validation(value: str) -> bool | str:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on", ""):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    if not os.path.exists(value):
        raise ConfigError(f"cert_validation={value!r}: no such CA bundle file")
    return value


def _number(query: Mapping[str, str], key: str, default: float) -> float:
    if key not in query:
        return default
    try:
        number = float(query[key])
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number of seconds, got {query[key]!r}") from exc
    if number <= 0:
        raise ConfigError(f"{key} must be positive, got {query[key]!r}")
    return number
