"""The README's set-up block and the commands it shows agree with the CLI."""
import re
from pathlib import Path

from neurodsl.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [l for b in blocks for l in b.splitlines() if l.strip()]


def test_set_up_has_exactly_two_commands_and_says_how_to_get_neurodsl_on_path():
    setup = _section("Set up")
    assert len(_bash_lines(setup)) == 2
    assert "source .venv/bin/activate" in setup and ".venv/bin/neurodsl" in setup
    assert ".[dask]" in setup


def test_every_readme_command_exists_in_the_cli():
    for line in _bash_lines(README):
        if not line.startswith("neurodsl "):
            continue
        words = line.split()
        cmd = main.commands.get(words[1])
        assert cmd is not None, line
        if hasattr(cmd, "commands"):  # a group: analyze, make-data
            assert words[2] in cmd.commands, line


def test_outputs_lists_every_command():
    outputs = _section("Outputs")
    for name in ("simulate", "infer-network", "homeostatic", "teacher", "fit-student",
                 "analyze odourants", "analyze student", "make-data rnn-export"):
        assert f"`{name}" in outputs, name
