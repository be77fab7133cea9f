import subprocess
import sys

from memtax.cli import main


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: memtax" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "memtax", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("memtax ")
