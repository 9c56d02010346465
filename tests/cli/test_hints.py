"""Hints for the mistakes a newcomer makes first: a `shell` step, a step type whose plugin is
not installed, `jobs:` written as a map (the GitHub Actions shape)."""

from __future__ import annotations

from pathlib import Path


def hints(stderr: str) -> list[str]:
    return [ln.strip()[len("hint: "):] for ln in stderr.splitlines() if ln.strip().startswith("hint: ")]


def test_a_shell_step_points_to_external_process(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: sh}
        jobs:
          - id: a
            steps:
              - {id: s, type: shell, inputs: {command: "ls | wc -l"}}
    """)
    res = cli("validate", str(flow))
    assert res.exit_code == 2
    assert f"{flow}:6:23: flow.unknown_step_type: unknown step type 'shell'" in res.stderr
    (hint,) = hints(res.stderr)
    assert "'external.process'" in hint and "shell: true" in hint


def test_a_step_type_of_a_missing_plugin_says_how_to_install_it(cli, write_flow, tmp_path: Path) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: plug}
        jobs:
          - id: a
            steps:
              - {id: s, type: acme.shout, inputs: {text: hi}}
    """)
    res = cli("validate", str(flow))
    assert res.exit_code == 2
    (hint,) = hints(res.stderr)
    assert hint.startswith("no installed plugin provides 'acme.*' step types")
    assert "pip install" in hint and "--plugin-path DIR" in hint
    # following the hint works: a plugin folder that provides the step type
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "acme.py").write_text(
        "from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step\n\n\n"
        "@register_step('acme.shout')\n"
        "class Shout(Step):\n"
        "    def run(self, ctx, inputs):\n"
        "        return StepResult(STEP_SUCCESS, {'text': inputs['text'].upper()})\n",
        encoding="utf-8",
    )
    assert cli("validate", str(flow), "--plugin-path", str(plugins)).exit_code == 0


def test_steps_show_of_an_unknown_type_gives_the_same_hint(cli) -> None:
    res = cli("steps", "show", "bash")
    assert res.exit_code == 2
    assert "shell: true" in res.stderr


def test_jobs_written_as_a_map_is_said_to_be_a_list(cli, write_flow) -> None:
    flow = write_flow("""
        version: 1
        flow: {id: gha}
        jobs:
          build:
            steps:
              - {id: s, type: noop}
    """)
    res = cli("validate", str(flow))
    assert res.exit_code == 2
    assert f"{flow}:4:3: schema.type: expected array, got object (at jobs)" in res.stderr
    (hint,) = hints(res.stderr)
    assert hint.startswith("jobs is a list, not a map of job names (as in GitHub Actions): write '- id: build'")
