"""`aetherflow validate` without typer: what the command does once its arguments are parsed.
``cli/inspect.py`` (the typer command) and ``cli/fast.py`` both call :func:`validate_command`
with the parameters of the typer command function, by name."""

from __future__ import annotations

from typing import Any

from aetherflow.cli.support import guarded, process_env, stderr, stdout
from aetherflow.errors import ExitCode, SpecError


def validate_command(*, flow: str, as_json: bool = False, plugin_path: list[str] | None = None,
                     state: str | None = None) -> None:
    """Check ``flow`` and print every issue (exit 2) or one ``ok`` line. ``state`` is accepted
    like every command's ``--state`` and not used."""
    from aetherflow import render
    from aetherflow.pipeline import check_flow, load_registry, settings_from_env

    with guarded(as_json):
        loaded_plugins = load_registry(settings_from_env(process_env(), plugin_paths=tuple(plugin_path or ())))
        for err in loaded_plugins.errors:
            stderr(f"warning: plugin failed to import: {err}")
        try:
            loaded, issues = check_flow(flow, loaded_plugins)
        except SpecError as exc:
            issues = list(exc.issues)
            loaded = None
        warnings = _env_warnings(loaded, flow, plugin_path) if loaded is not None and not issues else []
        if as_json:
            doc: dict[str, Any] = {"ok": not issues, "file": flow, "issues": [i.as_dict() for i in issues],
                                   "warnings": [w.as_dict() for w in warnings]}
            if loaded is not None:
                doc["flow_id"] = loaded.flow.id
                doc["jobs"] = len(loaded.flow.jobs)
                doc["steps"] = sum(len(j.steps) for j in loaded.flow.jobs)
            stdout(render.dumps(doc))
        if issues:
            stderr(render.issues_text(issues))
            raise SystemExit(int(ExitCode.USAGE))
        if warnings:
            stderr(render.warnings_text(warnings))
        if not as_json:
            f = loaded.flow
            stdout(f"{flow}: ok (flow {f.id}, {len(f.jobs)} job(s), {sum(len(j.steps) for j in f.jobs)} step(s))")


def _env_warnings(loaded: Any, flow: str, plugin_path: list[str] | None) -> list[Any]:
    """``{{ env.X }}`` without a default and ``X`` not set here: a warning only, since CI
    validates without the production environment (``run`` refuses such a flow)."""
    from aetherflow.context import CancelToken
    from aetherflow.errors import AetherflowError
    from aetherflow.pipeline import Runner, RunRequest, settings_from_env
    from aetherflow.spec.references import missing_env_issues

    settings = settings_from_env(process_env(), plugin_paths=tuple(plugin_path or ()))
    try:
        env = Runner(settings, cancel=CancelToken())._env(loaded.flow, RunRequest(flow_path=flow))
    except AetherflowError:  # an unreadable env file: `run` and `doctor` report it
        return []
    return missing_env_issues(loaded.data, loaded.positions, flow, env)
