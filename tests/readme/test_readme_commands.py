"""Every ``manage.py`` command the README shows parses with that command's own arguments.

No made-up flags: each command line in the README (code blocks and inline code alike) is run
through the command's real argument parser, the one ``manage.py`` uses. Lines holding a
placeholder (``<command>``, ``...``) are skipped; the "Run commands by hand" block must be there
and its lines are all checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


PLACEHOLDER = re.compile(r"<|\.\.\.|…")


def command_lines(text: str) -> list[str]:
    """``manage.py ...`` invocations in fenced blocks and inline code, comments cut off.

    A block line with a placeholder is skipped; so is inline code with one anywhere (an error
    message quoting a command, ``python manage.py <command>``)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    candidates = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
                  if not line.lstrip().startswith("#")]
    candidates += [code for code in re.findall(r"`([^`\n]+)`", prose)
                   if not PLACEHOLDER.search(code)]
    lines = []
    for line in candidates:
        if "manage.py " not in line:
            continue
        line = re.split(r"\s#\s|&&|;|\|", line.split("manage.py ", 1)[1])[0].strip()
        if line and not PLACEHOLDER.search(line):
            lines.append(line)
    return lines


def parse(line: str) -> None:
    name, *args = shlex.split(line)
    assert name in get_commands(), f"no such command: manage.py {name}"
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except CommandError as exc:
        pytest.fail(f"README: `manage.py {line}` does not parse: {exc}")


def test_the_run_commands_by_hand_block_parses():
    match = re.search(r"<!-- commands-start -->\s*```bash\n(.*?)```\s*<!-- commands-end -->",
                      README, re.S)
    assert match, "README has no commands-start/commands-end block"
    lines = command_lines(f"```bash\n{match.group(1)}```")
    commands = {line.split()[0] for line in lines}
    assert {"reprocess", "removebg", "fetch_model", "reconcile_tasks", "run_worker",
            "createsuperuser"} <= commands
    for line in lines:
        parse(line)


def test_every_manage_py_command_in_the_readme_parses():
    lines = command_lines(README)
    assert len(lines) > 20
    for line in lines:
        parse(line)


def test_a_made_up_flag_is_caught():
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        parse("reprocess --everything")
