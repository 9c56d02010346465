"""`aetherflow validate` without typer: what the command does once its arguments are parsed.
``cli/inspect.py`` (the typer command) and ``cli/fast.py`` both call :func:`validate_command`
with the parameters of the typer command function, by name."""

from __future__ import annotations

from typing import Any

from aetherflow.cli.support import flow_argument, guarded, process_env, stderr, stdout
from aetherflow.errors import ExitCode, SpecError


def validate_command(*, flow: str | None = None, flow_yaml: str | None = None, as_json: bool = False,
                     plugin_path: list[str] | None = None, state: str | None = None) -> None:
    """Check ``flow`` (or ``flow_yaml``, aetherflow-core's option) and print every issue (exit 2)
    or one ``ok`` line. ``state`` is accepted like every command's ``--state`` and not used."""
    from aetherflow import render
    from aetherflow.compat import ignored_env_warnings
    from aetherflow.pipeline import check_flow, load_registry, settings_from_env

    with guarded(as_json):
        flow = flow_argument(flow, flow_yaml, "validate")
        for text in ignored_env_warnings(process_env()):
            stderr(f"warning: {text}")
        loaded_plugins = load_registry(settings_from_env(process_env(), plugin_paths=tuple(plugin_path or ())))
        for err in loaded_plugins.errors:
            stderr(f"warning: plugin failed to import: {err}")
        for text in loaded_plugins.warnings:
            stderr(f"warning: {text}")
        try:
            loaded, issues = check_flow(flow, loaded_plugins)
        except SpecError as exc:
            issues = list(exc.issues)
            loaded = None
        if as_json:
            doc: dict[str, Any] = {"ok": not issues, "file": flow, "issues": [i.as_dict() for i in issues]}
            if loaded is not None:
                doc["flow_id"] = loaded.flow.id
                doc["jobs"] = len(loaded.flow.jobs)
                doc["steps"] = sum(len(j.steps) for j in loaded.flow.jobs)
            stdout(render.dumps(doc))
        if issues:
            stderr(render.issues_text(issues))
            raise SystemExit(int(ExitCode.USAGE))
        if not as_json:
            f = loaded.flow
            stdout(f"{flow}: ok (flow {f.id}, {len(f.jobs)} job(s), {sum(len(j.steps) for j in f.jobs)} step(s))")
