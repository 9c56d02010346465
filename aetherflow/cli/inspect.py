"""`validate`, `schema`, `graph`, `steps`, `explain`, `doctor`: commands that read a flow or the
registry and run nothing."""

# No `from __future__ import annotations` here: typer reads the command signatures, and string
# annotations are evaluated again on each read (several per command); real ones are built once.

import json
from typing import Annotated, Any

import typer

from aetherflow.cli import options as o
from aetherflow.cli.app import root_app
from aetherflow.cli.support import begin, flow_argument, guarded, stderr, stdout
from aetherflow.errors import AetherflowError, ExitCode, SpecError, UsageError

steps_app = typer.Typer(help="Registered step types (built-in and plugins).\n\nExample: aetherflow steps list", no_args_is_help=True)
root_app.add_typer(steps_app, name="steps")


def _settings(plugin_path: list[str] | None, state: str | None = None, config: str | None = None,
              log_file: str | None = None) -> Any:
    settings, _ = begin(config=config, log_file=log_file, plugin_paths=tuple(plugin_path or ()), state=state)
    return settings


def _plugin_warnings(loaded: Any) -> None:
    for err in loaded.errors:
        stderr(f"warning: plugin failed to import: {err}")
    for text in loaded.warnings:
        stderr(f"warning: {text}")


@root_app.command("validate")
def validate_cmd(
    flow: o.Flow = None,
    flow_yaml: o.FlowYaml = None,
    as_json: o.Json = False,
    plugin_path: o.PluginPath = None,
    state: o.StateUnused = None,
    strict: Annotated[bool, typer.Option("--strict", help="Also fail on declared outcomes that on_outcome does not route.")] = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Check FLOW: YAML, schema, references, templates, `when`, step types and inputs.

    Every problem is printed as FILE:LINE:COLUMN: CODE: MESSAGE (at JSON.PATH). Exit 0 or 2.
    An env variable read without a default that is not set here is a warning (exit 0): `run`
    refuses it, but CI validates without the production environment.
    With --strict, every outcome a step type declares beyond success and skipped must be
    routed by the step's on_outcome (continue included).

    Example: aetherflow validate flows/daily.yaml --strict
    """
    validate_command(flow=flow, flow_yaml=flow_yaml, as_json=as_json, plugin_path=plugin_path, strict=strict,
                     config=config, log_file=log_file)


def validate_command(*, flow: str | None, flow_yaml: str | None = None, as_json: bool = False,
                     plugin_path: list[str] | None = None, strict: bool = False, config: str | None = None,
                     log_file: str | None = None) -> None:
    """Check ``flow`` (or ``flow_yaml``, aetherflow-core's option) and print every issue (exit 2)
    or one ``ok`` line."""
    from aetherflow import render
    from aetherflow.compat import ignored_env_warnings
    from aetherflow.prepare import check_flow, load_plugins

    with guarded(as_json):
        flow = flow_argument(flow, flow_yaml, "validate")
        settings = _settings(plugin_path, None, config, log_file)
        for text in ignored_env_warnings(settings.env):
            stderr(f"warning: {text}")
        loaded_plugins = load_plugins(settings)
        _plugin_warnings(loaded_plugins)
        try:
            loaded, issues = check_flow(flow, loaded_plugins, strict=strict)
        except SpecError as exc:
            issues = list(exc.issues)
            loaded = None
        warnings = _env_warnings(loaded, flow, settings) if loaded is not None and not issues else []
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
        if not as_json and loaded is not None:
            f = loaded.flow
            stdout(f"{flow}: ok (flow {f.id}, {len(f.jobs)} job(s), {sum(len(j.steps) for j in f.jobs)} step(s))")


def _env_warnings(loaded: Any, flow: str, settings: Any) -> list[Any]:
    """``{{ env.X }}`` without a default and ``X`` not set here: a warning only, since CI
    validates without the production environment (``run`` refuses such a flow)."""
    from aetherflow.prepare import flow_env
    from aetherflow.spec.references import missing_env_issues

    try:
        env = flow_env(settings, loaded.flow)
    except AetherflowError:  # an unreadable env file: `run` and `doctor` report it
        return []
    return missing_env_issues(loaded.data, loaded.positions, flow, env)


@root_app.command("schema")
def schema_cmd(
    which: Annotated[str, typer.Argument(help="flow, profiles or config.")] = "flow",
    plugin_path: o.PluginPath = None,
    state: o.StateUnused = None,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Print the JSON Schema (Draft 2020-12) of flow files (with plugin step inputs), profiles or the config file.

    Example: aetherflow schema flow > flow.schema.json
    """
    from aetherflow.spec.schema import load_schema

    with guarded():
        settings = _settings(plugin_path, None, config, log_file)
        if which not in ("flow", "profiles", "config"):
            raise UsageError(f"unknown schema {which!r}: use flow, profiles or config")
        schema = load_schema(which)
        if which == "flow":
            from aetherflow.prepare import load_plugins

            loaded = load_plugins(settings)
            schema = merge_step_schemas(schema, loaded.registry)
        stdout(json.dumps(schema, indent=2, ensure_ascii=False))


def merge_step_schemas(schema: dict[str, Any], registry: Any) -> dict[str, Any]:
    """Add an if/then per step type so editors know each type's inputs."""
    from aetherflow.model import thaw

    step = schema.get("$defs", {}).get("step")
    if not isinstance(step, dict):
        return schema
    branches = []
    for name, st in sorted(registry.steps.items()):
        branch: dict[str, Any] = {"if": {"properties": {"type": {"const": name}}, "required": ["type"]}}
        if st.meta.inputs_schema:
            branch["then"] = {"properties": {"inputs": thaw(st.meta.inputs_schema)}}
        else:
            branch["then"] = {}
        branches.append(branch)
    step.setdefault("allOf", []).extend(branches)
    types = sorted(registry.steps)
    step.setdefault("properties", {}).setdefault("type", {})["examples"] = types
    return schema


@root_app.command("graph")
def graph_cmd(
    flow: o.Flow = None,
    flow_yaml: o.FlowYaml = None,
    fmt: Annotated[str, typer.Option("--format", help="ascii, mermaid or dot.")] = "ascii",
    state: o.StateUnused = None,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Print the job/step graph of FLOW.

    Example: aetherflow graph flows/daily.yaml --format mermaid
    """
    from aetherflow.engine.plan import topo_order
    from aetherflow.spec import load_flow

    with guarded():
        _settings(None, state, config, log_file)
        if fmt not in ("ascii", "mermaid", "dot"):
            raise UsageError(f"--format {fmt!r}: use ascii, mermaid or dot")
        f = load_flow(flow_argument(flow, flow_yaml, "graph")).flow
        order = topo_order(f)
        jobs = {j.id: j for j in f.jobs}
        lines: list[str] = []
        if fmt == "ascii":
            lines.append(f"flow {f.id}")
            for jid in order:
                j = jobs[jid]
                deps = f"  <- {', '.join(j.depends_on)}" if j.depends_on else ""
                when = f"  [when {j.when_text}]" if j.when_text else ""
                lines.append(f"  job {jid}{deps}{when}")
                for i, s in enumerate(j.steps):
                    branch = "└─" if i == len(j.steps) - 1 else "├─"
                    lines.append(f"    {branch} {s.id} ({s.type})")
        elif fmt == "mermaid":
            lines.append("flowchart TD")
            for jid in order:
                j = jobs[jid]
                label = f"{jid}<br/>" + "<br/>".join(f"{s.id}: {s.type}" for s in j.steps)
                lines.append(f'  {_node(jid)}["{label}"]')
            for jid in order:
                for d in jobs[jid].depends_on:
                    lines.append(f"  {_node(d)} --> {_node(jid)}")
        else:
            lines.append(f'digraph "{f.id}" {{')
            lines.append("  rankdir=LR;")
            for jid in order:
                label = "\\n".join([jid, *(f"{s.id}: {s.type}" for s in jobs[jid].steps)])
                lines.append(f'  "{jid}" [shape=box, label="{label}"];')
            for jid in order:
                for d in jobs[jid].depends_on:
                    lines.append(f'  "{d}" -> "{jid}";')
            lines.append("}")
        stdout("\n".join(lines))


def _node(job_id: str) -> str:
    return "j_" + "".join(c if c.isalnum() else "_" for c in job_id)


@steps_app.command("list")
def steps_list(plugin_path: o.PluginPath = None, as_json: o.Json = False, state: o.StateUnused = None,
               config: o.Config = None, log_file: o.LogFile = None) -> None:
    """List registered step types with their source.

    Example: aetherflow steps list
    """
    from aetherflow import render
    from aetherflow.prepare import load_plugins

    with guarded(as_json):
        loaded = load_plugins(_settings(plugin_path, None, config, log_file))
        _plugin_warnings(loaded)
        reg = loaded.registry
        rows: list[dict[str, Any]] = [
            {"type": n, "source": st.source, "outcomes": list(st.outcomes), "description": st.meta.description}
            for n, st in sorted(reg.steps.items())
        ]
        if as_json:
            stdout(render.dumps({"steps": rows, "connectors": sorted(reg.connectors),
                                 "plugins": [{"name": p.name, "source": p.source, "error": p.error} for p in loaded.plugins]}))
            return
        stdout(render.steps_text(rows))


@steps_app.command("show")
def steps_show(
    type_name: Annotated[str, typer.Argument(metavar="TYPE")],
    plugin_path: o.PluginPath = None,
    state: o.StateUnused = None,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Show one step type: source, outcomes and inputs schema.

    Example: aetherflow steps show external.process
    """
    from aetherflow.model import thaw
    from aetherflow.prepare import load_plugins

    with guarded():
        reg = load_plugins(_settings(plugin_path, None, config, log_file)).registry
        st = reg.step(type_name)
        if st is None:
            from aetherflow.engine.preflight import unknown_type_hint

            raise UsageError(f"unknown step type '{type_name}'", code="flow.unknown_step_type",
                             hint=unknown_type_hint(type_name, reg.steps))
        stdout(f"{st.name}\n  source: {st.source}\n  outcomes: {', '.join(st.outcomes)}\n  may wait: {'yes' if st.meta.waits else 'no'}")
        if st.meta.retry:
            stdout(f"  retry default: {json.dumps(thaw(st.meta.retry), sort_keys=True)}")
        if st.meta.description:
            stdout(f"  {st.meta.description}")
        stdout("  inputs schema:")
        stdout(json.dumps(thaw(st.meta.inputs_schema or {}), indent=2))


@root_app.command("explain")
def explain_cmd(
    flow: o.Flow = None,
    flow_yaml: o.FlowYaml = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile applied to every resource.")] = None,
    profiles: Annotated[str | None, typer.Option("--profiles", help="Profiles file.")] = None,
    env_file: Annotated[list[str] | None, typer.Option("--env-file", help="Extra env file (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="Run parameter KEY=VALUE.")] = None,
    state: o.State = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Show every resolved resource value and where it comes from (secrets masked).

    Example: aetherflow explain flows/etl_sqlite.yaml --param db=/srv/shop.db
    """
    from aetherflow import render
    from aetherflow.doctor import explain
    from aetherflow.resolve import parse_param_args

    with guarded(as_json):
        doc = explain(_settings(None, state, config, log_file), flow_argument(flow, flow_yaml, "explain"),
                      params=parse_param_args(param or []), env_files=tuple(env_file or ()), profile=profile,
                      profiles_file=profiles)
        if as_json:
            stdout(render.dumps(doc))
            return
        stdout(f"flow {doc['flow_id']}")
        for name, p in doc["params"].items():
            stdout(f"  param {name} = {json.dumps(p, default=str)}")
        for s in doc["secrets"]:
            stdout(f"  secret {s['name']} = *** (from {s['source']})")
        for r in doc["resources"]:
            stdout(f"  resource {r['name']} ({r['kind']}:{r['driver']})")
            for k, v in r["values"].items():
                stdout(f"    {k} = {v['value']}  <- {v['origin']}")


@root_app.command("doctor")
def doctor_cmd(
    flow: o.Flow = None,
    flow_yaml: o.FlowYaml = None,
    state: o.State = None,
    plugin_path: o.PluginPath = None,
    env_file: Annotated[list[str] | None, typer.Option("--env-file", help="Extra env file (repeatable).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile applied to every resource, as for run.")] = None,
    profiles: Annotated[str | None, typer.Option("--profiles", help="Profiles file, as for run.")] = None,
    as_json: o.Json = False,
    config: o.Config = None,
    log_file: o.LogFile = None,
) -> None:
    """Check what FLOW needs: env vars (the flow's and its profiles'), secrets, plugins,
    profiles, state directory (or the PostgreSQL store a URL names: reachable, schema,
    privileges). Exit 2 when something is missing.

    Example: aetherflow doctor flows/daily.yaml
    """
    from aetherflow import render
    from aetherflow.doctor import doctor

    with guarded(as_json):
        checks = doctor(_settings(plugin_path, state, config, log_file), flow_argument(flow, flow_yaml, "doctor"),
                        tuple(env_file or ()), profile=profile, profiles_file=profiles)
        bad = [c for c in checks if not c["ok"]]
        if as_json:
            stdout(render.dumps({"ok": not bad, "checks": checks}))
        else:
            for c in checks:
                stdout(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}")
        if bad:
            raise typer.Exit(int(ExitCode.USAGE))
