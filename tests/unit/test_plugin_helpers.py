"""Small pure helpers of the pytest plugin."""

from __future__ import annotations

from harness.fixtures.app import capped, split_command


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


def test_app_output_is_attached_whole_or_its_tail_saying_what_was_cut() -> None:
    assert capped("short output\n", limit=100) == "short output\n"
    text = "".join(f"line {i}\n" for i in range(1000)) + "é" * 10  # multi-byte at the end
    shown = capped(text, limit=100)
    first, rest = shown.split("\n", 1)
    total = len(text.encode())
    assert first == (
        f"[output cut: the first {total - 100} of {total} bytes are not shown; the last 100 follow]"
    )
    assert rest.endswith("line 999\n" + "é" * 10)
    assert len(rest.encode()) <= 100
