"""Host URLs: parsing, defaults, refusals, and that secrets never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ENVIRON, HostTarget, Secret, find_password, password_variable
from harness.errors import ConfigError

pytest_plugins = ["pytester"]

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


# -- clear text, ports, and what a traceback can show ---------------------------------------


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("psrp://qa@hv.lab?auth=basic&ssl=false", False),
        ("psrp://qa@10.0.0.5:5985?auth=basic&ssl=false", False),
        ("psrp://qa@hv.lab?auth=basic&ssl=false&allow_insecure=true", True),
        ("psrp://qa@127.0.0.1?auth=basic&ssl=false", True),  # never leaves the machine
        ("psrp://qa@localhost?auth=basic&ssl=false", True),
        ("psrp://qa@[::1]?auth=basic&ssl=false", True),
        ("psrp://qa@hv.lab?auth=basic", True),  # TLS
        ("psrp://qa@hv.lab?auth=ntlm&ssl=false", True),  # NTLM encrypts the messages
    ],
)
def test_basic_auth_in_clear_text_over_the_network_needs_an_explicit_opt_in(
    url: str, accepted: bool
) -> None:
    if accepted:
        assert HostTarget.parse(url, ENV).auth in ("basic", "ntlm")
        return
    with pytest.raises(ConfigError) as info:
        HostTarget.parse(url, ENV)
    assert "in clear text" in str(info.value) and "allow_insecure=true" in str(info.value)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("psrp://qa@hv?port=0", "got 0"),
        ("psrp://qa@hv?port=70000", "got 70000"),
        ("psrp://qa@hv?port=https", "got 'https'"),
        ("psrp://qa@hv:99999", "got 'in the URL'"),
        ("psrp://qa@hv?allow_insecure=perhaps", "allow_insecure must be true or false"),
        ("psrp://qa@[hv", "host URL is not a URL"),
    ],
)
def test_ports_and_flags_are_checked(url: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        HostTarget.parse(url, ENV)
    assert needle in str(info.value)


def test_the_environment_view_shows_nothing_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMH_HOST_PASSWORD", "env-secret-value")
    assert repr(ENVIRON) == "<process environment>"
    assert ENVIRON["DMH_HOST_PASSWORD"] == "env-secret-value"  # read on demand
    assert HostTarget.parse("psrp://qa@hv").password.reveal() == "env-secret-value"
    assert repr(find_password("hv", "qa")) == "Secret('***')"


def test_a_long_traceback_with_locals_shows_no_password_or_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CA bundle check fails after the password has been read: every frame of parse()
    # is in the traceback, with its arguments and (-l) its locals.
    pytester.makepyfile(
        test_parse="""
        from harness.config import HostTarget

        def test_parse():
            HostTarget.parse("psrp://qa@hv.lab?cert_validation=/no/such/ca.pem")
        """
    )
    monkeypatch.setenv("DMH_HOST_PASSWORD", "pw-in-the-environment")
    monkeypatch.setenv("DMH_CANARY", "canary-value-of-the-environment")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tb=long", "-l")
    result.assert_outcomes(failed=1)
    text = result.stdout.str() + result.stderr.str()
    assert "no such CA bundle file" in text and "env = <process environment>" in text
    assert "pw-in-the-environment" not in text
    assert "canary-value-of-the-environment" not in text
