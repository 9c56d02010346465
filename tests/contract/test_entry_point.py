"""The process entry point (``aetherflow.cli:entry``, used by the ``aetherflow`` script and by
``python -m aetherflow``) tunes the garbage collector for a short-lived command and freezes it
before the interpreter exits (docs/performance.md). What a user relies on must not change: the
exit code, atexit handlers of plugins, and output written just before the exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
import atexit
import sys

from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("acme.goodbye")
class Goodbye(Step):
    """Leave work for the end of the process."""

    def run(self, ctx, inputs):
        target = inputs["file"]
        atexit.register(lambda: open(target, "w").write("atexit ran\\n"))
        sys.stderr.write("unflushed line")  # no newline, no flush: the exit must flush it
        return StepResult(STEP_SUCCESS, {})
'''


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aetherflow", *args], capture_output=True, text=True, timeout=120)


def test_atexit_handlers_and_buffered_output_survive_the_exit(home: Path, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "goodbye.py").write_text(textwrap.dedent(PLUGIN).lstrip(), encoding="utf-8")
    marker = tmp_path / "atexit.txt"
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(f"""
        version: 1
        flow: {{id: bye}}
        jobs:
          - id: j
            steps:
              - {{id: s, type: acme.goodbye, inputs: {{file: {json.dumps(str(marker))}}}}}
        """).lstrip(), encoding="utf-8")
    proc = _run("run", str(flow), "--plugin-path", str(plugins), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "unflushed line" in proc.stderr
    assert marker.read_text() == "atexit ran\n"


def test_exit_codes_pass_through(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nflow: {id: x}\njobs: []\n", encoding="utf-8")
    assert _run("validate", str(bad)).returncode == 2
    failing = tmp_path / "fail.yaml"
    failing.write_text("version: 1\nflow: {id: f}\njobs:\n  - id: j\n    steps:\n"
                       "      - {id: s, type: external.process, inputs: {command: [sh, -c, 'exit 3']}}\n",
                       encoding="utf-8")
    assert _run("run", str(failing), "-q").returncode == 1
    assert _run("runs", "list").returncode == 0
    assert _run("no-such-command").returncode == 2


def test_entry_sets_the_collector_for_a_command_and_freezes_it_at_the_end(home: Path) -> None:
    probe = textwrap.dedent("""
        import gc, json, sys
        from aetherflow.cli import GC_THRESHOLD, entry
        default = gc.get_threshold()
        try:
            entry()
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({"code": code, "default": default, "threshold": gc.get_threshold(),
                          "wanted": GC_THRESHOLD, "frozen": gc.get_freeze_count()}))
    """)
    proc = subprocess.run([sys.executable, "-c", probe, "runs", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["code"] == 0
    assert info["threshold"] == list(info["wanted"]) and info["threshold"] != info["default"]
    assert info["frozen"] > 10_000  # the modules and everything the command built
