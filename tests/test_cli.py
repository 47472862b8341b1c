"""The `xnorinfer` command: version, help, and the kernel self-check on real shapes."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest

from xnorinfer import _core, cli
from xnorinfer.kernel_check import time_shape


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # Started outside the repository so that the installed package (with its extension) is used.
    return subprocess.run(
        [sys.executable, "-m", "xnorinfer", *args], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )


def test_version_names_isa_paths():
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.startswith("xnorinfer ")
    assert f"ISA path: {_core.default_isa()}" in res.stdout
    for isa in _core.available_isas():
        assert isa in res.stdout


def test_kernels_help_has_example():
    res = run_cli("kernels", "--help")
    assert res.returncode == 0 and "example:" in res.stdout and "--threads" in res.stdout


@pytest.mark.parametrize("isa", _core.available_isas())
def test_kernel_check_is_exact_on_each_path(isa):
    # A small shape so that the scalar path stays quick; the check compares binary sums with
    # the float convolution of the same +/-1 data.
    t = time_shape((65, 9, 7, 40), threads=2, isa=isa)
    assert t.exact and t.binary_ms > 0 and t.float_ms > 0


def test_bad_threads_is_a_clean_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["kernels", "--threads", "0"])
    assert exc.value.code == 2
    assert "expected an integer from 1 to 1024, got 0" in capsys.readouterr().err
