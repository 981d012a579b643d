"""The `wildlink` dispatcher: argument handling, lazy imports, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools import cli


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in cli.COMMANDS:
        assert name in result.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: wildlink" in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error():
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in result.stderr
    assert "Traceback" not in result.stderr


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("wildlink")


def test_help_does_not_import_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from tools import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_every_command_module_exists():
    import importlib.util

    for module_name, _ in cli.COMMANDS.values():  # located, not imported (TensorFlow)
        assert importlib.util.find_spec(module_name) is not None, module_name


def test_subcommand_receives_its_own_arguments(monkeypatch, tmp_path):
    module = tmp_path / "fake_cmd.py"
    module.write_text(
        "def add_arguments(p):\n    p.add_argument('--n', type=int, required=True)\n"
        "seen = []\n"
        "def run(args):\n    seen.append(args.n)\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "encode", ("fake_cmd", "x"))
    assert cli.main(["-v", "encode", "--n", "7"]) == 0
    import fake_cmd

    assert fake_cmd.seen == [7]
    with pytest.raises(SystemExit) as exc:
        cli.main(["encode", "--n", "seven"])
    assert exc.value.code == 2


def test_user_errors_print_one_line(monkeypatch, tmp_path, capsys):
    module = tmp_path / "failing_cmd.py"
    module.write_text(
        "from tools.errors import UserError\n"
        "def add_arguments(p):\n    pass\n"
        "def run(args):\n    raise UserError('no images in /nowhere\\nsecond line')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "encode", ("failing_cmd", "x"))
    assert cli.main(["encode"]) == 2
    assert capsys.readouterr().err == "wildlink encode: error: no images in /nowhere\n"


def test_number_arguments_name_the_range():
    import argparse

    from tools.commands._args import fraction, number, positive_int

    assert positive_int("3") == 3 and fraction("0.5") == 0.5
    for parse, text, message in [(positive_int, "0", "expected an integer >= 1, got 0"),
                                 (positive_int, "x", "expected an integer, got 'x'"),
                                 (fraction, "1.5", "expected a number <= 1, got 1.5"),
                                 (fraction, "nan", "expected a number, got 'nan'"),
                                 (number(float, 0, 1, high_open=True), "1", "< 1")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)


# ---------------------------------------------------------------- issue 16 item 9


def test_every_help_shows_its_defaults():
    """Each option with a real default says it in `--help` (None/False say nothing)."""
    import argparse

    for name in cli.COMMANDS:
        parser = cli.build_parser(name)
        formatter = parser._get_formatter()
        for action in parser._actions:
            default = action.default
            if (action.help in (None, argparse.SUPPRESS) or default in (None, False, argparse.SUPPRESS)
                    or isinstance(default, list | tuple) and not default
                    or not action.option_strings):
                continue
            text = formatter._expand_help(action)
            assert "default" in text.lower(), f"wildlink {name} {action.option_strings[0]}: {text}"
    assert "(default: 128)" in cli.build_parser("train").format_help()


def test_missing_data_is_reported_before_tensorflow_loads(tmp_path):
    code = (
        "import sys\n"
        "from tools import cli\n"
        f"code = cli.main(['train', '--data', {str(tmp_path / 'nowhere')!r}, '--run', "
        f"{str(tmp_path / 'run')!r}])\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "WILDLINK_DATA": str(tmp_path / "nodata")})
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "nowhere" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    default = subprocess.run([sys.executable, "-m", "tools.cli", "prune", str(tmp_path),
                              "--width", "8", "--out", str(tmp_path / "o")],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "WILDLINK_DATA": str(tmp_path / "nodata")})
    assert default.returncode == 2 and "$WILDLINK_DATA/train" in default.stderr


def test_tensorflow_start_up_noise_is_off_unless_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cli._quiet_tensorflow(1)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    cli._quiet_tensorflow(0)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own choice stays
    cli._quiet_tensorflow(0)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
