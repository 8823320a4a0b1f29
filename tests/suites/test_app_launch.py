"""How the app's command line becomes a launch in the guest: words naming the user's files
are copied with their relative layout, a script brings the modules beside it, reference
apps are found by name, and bad input is refused naming the value and the rule; and the
WinRM guest channel's VMs go on a virtual switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SettingError
from harness.fixtures.app import GUEST_APP_DIR, GUEST_APPS_DIR, resolve_app
from tests.embedded import PLUGIN_ARGS, use_plugin_env

pytest_plugins = ["pytester"]


def test_a_script_in_the_users_directory_is_copied_with_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "my_service.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text("")
    (tmp_path / "notes.txt").write_text("not named, not a module: stays")
    launch = resolve_app("python3 my_service.py --port 8080", tmp_path, "/py")
    assert launch.argv == ("python3", "my_service.py", "--port", "8080")
    assert launch.working_directory == GUEST_APP_DIR
    assert sorted(guest for _, guest in launch.files) == [
        f"{GUEST_APP_DIR}/helper.py",
        f"{GUEST_APP_DIR}/my_service.py",
    ]


def test_named_folders_and_option_values_keep_their_layout(tmp_path: Path) -> None:
    app = tmp_path / "svc"
    (app / "conf").mkdir(parents=True)
    (app / "conf" / "a.ini").write_text("x")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "run.py").write_text("")
    launch = resolve_app("python3 ../lib/run.py --config=conf", app, "/py")
    # `..` reaches outside: the layout is kept relative to the common parent.
    assert launch.working_directory == f"{GUEST_APP_DIR}/svc"
    assert sorted(guest for _, guest in launch.files) == [
        f"{GUEST_APP_DIR}/lib/run.py",
        f"{GUEST_APP_DIR}/svc/conf/a.ini",
    ]


def test_a_bare_script_runs_with_the_guests_python(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    launch = resolve_app("app.py --x", tmp_path, "/guest/python")
    assert launch.argv == ("/guest/python", "app.py", "--x")


def test_a_reference_app_is_found_by_name(tmp_path: Path) -> None:
    launch = resolve_app("cache_slow.py", tmp_path, "/py")
    assert launch.argv == ("/py", f"{GUEST_APPS_DIR}/cache_slow.py")
    assert launch.files == () and launch.working_directory is None
    assert resolve_app("", tmp_path, "/py").argv == ("/py", f"{GUEST_APPS_DIR}/cache_good.py")


def test_the_files_a_load_names_are_copied_beside_the_apps(tmp_path: Path) -> None:
    """The load runs in the copy of the user's directory (`home`), with a reference app too."""
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "server.py").write_text("")
    (tmp_path / "bench.sh").write_text("")
    launch = resolve_app("python3 svc/server.py", tmp_path, "/py", load="sh bench.sh -n 10")
    assert sorted(guest for _, guest in launch.files) == [
        f"{GUEST_APP_DIR}/bench.sh",
        f"{GUEST_APP_DIR}/svc/server.py",
    ]
    assert launch.home == launch.working_directory == GUEST_APP_DIR
    reference = resolve_app("cache_quiet.py", tmp_path, "/py", load="sh bench.sh")
    assert reference.working_directory is None  # the reference app runs where it always did
    assert [guest for _, guest in reference.files] == [f"{GUEST_APP_DIR}/bench.sh"]
    assert reference.home == GUEST_APP_DIR


def test_absolute_paths_are_left_where_the_guest_sees_them(tmp_path: Path) -> None:
    launch = resolve_app("/usr/bin/env python3 /opt/app/x.py", tmp_path, "/py")
    assert launch.argv == ("/usr/bin/env", "python3", "/opt/app/x.py") and not launch.files


def test_a_script_that_is_nowhere_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"'nope\.py' is not allowed: is neither a file in"):
        resolve_app("nope.py", tmp_path, "/py")


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(201):
        (data / f"{i}.bin").write_text("")
    with pytest.raises(SettingError, match="names 201 files to copy into the guest; at most 200"):
        resolve_app("python3 -m app data", tmp_path, "/py")


WINRM_SUITE = """
import pytest
from harness.hyperv.guest import WinRMChannel

@pytest.mark.dm_memory(startup="512MB", minimum="256MB", maximum="1GB")
def test_guest_over_winrm(dm_guest, dm_vm, dm_host):
    assert dm_host.switch_for("windows") == "dmh-switch"
    assert isinstance(dm_guest.channel, WinRMChannel)
    assert dm_guest.counters().total_mb >= 512
"""


def test_the_winrm_channel_puts_vms_on_the_emulators_switch(pytester: pytest.Pytester) -> None:
    """A VM on no switch has no address: with --dm-guest-channel winrm new VMs go on one."""
    pytester.makepyfile(test_winrm=WINRM_SUITE)
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(*PLUGIN_ARGS, "--dm-guest-channel=winrm")
    result.assert_outcomes(passed=2)  # both guest profiles


def test_the_winrm_channel_on_a_lab_host_needs_a_switch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_winrm=WINRM_SUITE)
    with pytest.MonkeyPatch.context() as mp:
        use_plugin_env(mp)
        result = pytester.runpytest_subprocess(
            *PLUGIN_ARGS, "--dm-guest-channel=winrm", "--dm-guest-os=windows",
            "--dm-host=psrp://qa@lab.invalid",
        )  # fmt: skip
    result.stderr.fnmatch_lines(["*--dm-guest-channel winrm needs --dm-switch NAME on a lab host*"])
