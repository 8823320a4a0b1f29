"""Small pure helpers of the pytest plugin."""

from __future__ import annotations

from harness.fixtures.app import split_command


def test_windows_command_lines_keep_backslashes_and_drop_quotes() -> None:
    argv = split_command(
        r'"C:\Program Files\app\svc.exe" --data C:\data --name "a b"', windows=True
    )
    assert argv == [r"C:\Program Files\app\svc.exe", "--data", r"C:\data", "--name", "a b"]


def test_posix_command_lines_follow_shell_quoting() -> None:
    assert split_command("python3 app.py --name 'a b' x\\ y", windows=False) == [
        "python3",
        "app.py",
        "--name",
        "a b",
        "x y",
    ]
