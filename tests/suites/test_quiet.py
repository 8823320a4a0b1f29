"""No third-party warning reaches a user: not the first lines of `dmh emulator serve` (its
endpoint URL comes first), not a pytest run of the plugin (no warnings summary), not an
import with every warning made an error. asyncssh with cryptography 51 printed ten
`CryptographyDeprecationWarning` lines in each (harness/sshlib.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from tests.embedded import PLUGIN_ARGS, REPO, plugin_env, use_plugin_env

pytest_plugins = ["pytester"]

URL = re.compile(r"^https?://127\.0\.0\.1:\d+/wsman$")
STARTUP_TIMEOUT = 60.0  # a cold interpreter on 2 busy cores


def test_importing_the_ssh_modules_raises_no_warning() -> None:
    """Every warning an error (`-W error`): the two modules that import asyncssh still import."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import harness.hyperv.ssh, harness.emulator.ssh"],
        capture_output=True,
        text=True,
        env=plugin_env(),
        cwd=REPO,
        timeout=STARTUP_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


def test_emulator_serve_prints_its_url_first() -> None:
    """stdout and stderr as one stream, as a terminal shows them: the URL is the first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "emulator", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=plugin_env(),
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")  # the serve prints or ends: never blocks
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=STARTUP_TIMEOUT)
    assert URL.match(first), f"first line {first!r}; then:\n{rest}"
    assert "Warning" not in rest, rest


def test_a_plugin_run_shows_no_warnings(pytester: pytest.Pytester) -> None:
    """A user's project (none of this checkout's pytest settings) with a test on a Linux guest,
    reached over SSH: no warnings summary, nothing on stderr."""
    pytester.makepyfile(
        test_ssh_guest="""
        def test_guest_answers(dm_guest, dm_guest_os):
            assert dm_guest.channel.__class__.__name__ == "SSHChannel"  # preflight ran over it
        """
    )
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--dm-guest-os=linux", timeout=120)
    result.assert_outcomes(passed=1)
    assert "warnings summary" not in result.stdout.str()
    assert "Warning" not in result.stderr.str(), result.stderr.str()
