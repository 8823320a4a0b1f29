"""Host URLs: parsing, defaults, refusals, and that secrets never print."""

from __future__ import annotations

import pytest

from harness.config import HostTarget, Secret, password_variable
from harness.errors import ConfigError

ENV = {"DMH_HOST_PASSWORD": "s3cret-Pa55"}


def test_full_url_parses_every_option(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    target = HostTarget.parse(
        f"psrp://lab%5Cqa@hyperv01.lab:5986?auth=ntlm&cert_validation={ca}"
        "&read_timeout=45&operation_timeout=25&configuration_name=JEA",
        ENV,
    )
    assert (target.hostname, target.port, target.username) == ("hyperv01.lab", 5986, "lab\\qa")
    assert target.auth == "ntlm" and target.ssl is True
    assert target.cert_validation == str(ca)
    assert (target.read_timeout, target.operation_timeout) == (45.0, 25)
    assert target.configuration_name == "JEA"
    assert target.label == "psrp://hyperv01.lab:5986"


def test_defaults_are_https_negotiate_and_verified_tls() -> None:
    target = HostTarget.parse("psrp://qa@hv", ENV)
    assert (target.port, target.ssl, target.auth, target.cert_validation) == (
        5986,
        True,
        "negotiate",
        True,
    )
    assert target.encryption == "auto"


def test_plain_http_basic_turns_message_encryption_off() -> None:
    target = HostTarget.parse("psrp://qa@127.0.0.1:5985?ssl=false&auth=basic", ENV)
    assert target.port == 5985 and target.encryption == "never"


def test_password_in_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        HostTarget.parse("psrp://qa:hunter2@hv", ENV)
    assert "hunter2" not in str(info.value)


def test_per_host_password_wins_over_the_generic_one() -> None:
    env = {**ENV, password_variable("hv-01.lab"): "specific"}
    assert password_variable("hv-01.lab") == "DMH_HOST_PASSWORD_HV_01_LAB"
    assert HostTarget.parse("psrp://qa@hv-01.lab", env).password.reveal() == "specific"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://qa@hv", "psrp://"),
        ("psrp://qa@hv?auth=digest", "auth='digest'"),
        ("psrp://qa@hv?bogus=1", "'bogus'"),
        ("psrp://qa@hv?ssl=maybe", "ssl"),
        ("psrp://qa@hv?read_timeout=-1", "read_timeout"),
        ("psrp://qa@hv?cert_validation=/no/such/ca.pem", "no such CA"),
        ("psrp://hv", "DMH_HOST_USERNAME"),
    ],
)
def test_bad_urls_name_the_problem(url: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        HostTarget.parse(url, ENV)
    assert needle in str(info.value)


def test_missing_password_names_the_variables() -> None:
    with pytest.raises(ConfigError) as info:
        HostTarget.parse("psrp://qa@hv.lab", {})
    assert "DMH_HOST_PASSWORD_HV_LAB" in str(info.value)


def test_optional_auth_without_its_package_gives_an_install_hint() -> None:
    pytest.importorskip("pypsrp")
    import importlib.util

    if importlib.util.find_spec("krb5") is not None:
        pytest.skip("krb5 is installed here")
    with pytest.raises(ConfigError, match=r"pip install 'dm-harness\[kerberos\]'"):
        HostTarget.parse("psrp://qa@hv?auth=kerberos", ENV)


def test_secrets_never_print() -> None:
    target = HostTarget.parse("psrp://qa@hv", ENV)
    for shown in (repr(target), str(target), f"{target.password}", repr(target.password)):
        assert "s3cret-Pa55" not in shown
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
