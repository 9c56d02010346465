"""Registry-aware checks, run before anything executes (and by ``aetherflow validate``).

* ``flow.unknown_step_type`` — with a did-you-mean and the plugins that failed to import;
* ``inputs.*`` — step inputs against the step type's declared ``inputs_schema``;
* ``flow.unknown_outcome`` — ``on_outcome`` keys must be outcomes the step type declares;
* ``flow.wait_in_lock`` — a step that may wait cannot run nested in another (``with_lock``:
  the lock would be held while the run waits for hours);
* nested steps (the inputs a step type declares with ``register_step(nested=...)``, e.g.
  ``with_lock``'s ``step:`` / ``steps:``) get the same checks;
* ``plugin.bad_retry`` — a step type's default retry policy (``register_step(retry=...)``) must
  be a valid ``retry:`` (checked with the schema checks);
* with ``strict=True`` (``validate --strict``), ``flow.unrouted_outcome`` — an outcome the step
  type declares (beyond ``success``/``skipped``) that the step's ``on_outcome`` does not route:
  every outcome has a transition, if only ``continue``. Without ``strict`` an unrouted outcome
  continues, as always.

``check_inputs=False`` skips only the ``inputs.*`` checks (JSON Schema, the costly part), for a
flow the validation cache knows passed them with the same step types' schemas: see
:func:`inputs_fingerprint`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aetherflow.errors import Issue, Location
from aetherflow.model import FlowSpec
from aetherflow.registry import DEFAULT_OUTCOMES, Registry


class Preflight:
    def __init__(
        self,
        registry: Registry,
        positions: Any,
        file: str,
        plugin_errors: Sequence[str] = (),
        *,
        check_inputs: bool = True,
        strict: bool = False,
    ) -> None:
        self.registry = registry
        self.pos = positions
        self.file = file
        self.plugin_errors = tuple(plugin_errors)
        self.check_inputs = check_inputs
        self.strict = strict
        self.issues: list[Issue] = []
        self._validators: dict[str, Any] = {}
        self._retry_checked: set[str] = set()

    def loc(self, path: tuple[str | int, ...], *, key: bool = False) -> Location:
        if self.pos is None:
            from aetherflow.errors import format_path

            return Location(self.file, None, None, format_path(path))
        loc: Location = self.pos.location(self.file, path, key=key)
        return loc

    def check(self, flow: FlowSpec, data: Mapping[str, Any] | None) -> list[Issue]:
        for ji, job in enumerate(flow.jobs):
            for si, step in enumerate(job.steps):
                path: tuple[str | int, ...] = ("jobs", ji, "steps", si)
                raw = data["jobs"][ji]["steps"][si] if data is not None else None
                self.check_step(step.type, step.inputs, dict(step.on_outcome), path, raw, nested_in=None)
        return self.issues

    def check_step(
        self,
        type_name: str,
        inputs: Mapping[str, Any],
        on_outcome: Mapping[str, str],
        path: tuple[str | int, ...],
        raw: Mapping[str, Any] | None,
        *,
        nested_in: str | None,
    ) -> None:
        st = self.registry.step(type_name)
        if st is None:
            hint = unknown_type_hint(type_name, self.registry.steps)
            msg = f"unknown step type '{type_name}'"
            if self.plugin_errors:
                msg += "; plugins that failed to import: " + "; ".join(self.plugin_errors)
            self.issues.append(Issue("flow.unknown_step_type", msg, self.loc((*path, "type")), hint))
            return
        if nested_in is not None and st.meta.waits:
            self.issues.append(
                Issue(
                    "flow.wait_in_lock",
                    f"step type '{type_name}' may wait, and a waiting step cannot run nested in '{nested_in}'",
                    self.loc((*path, "type")),
                    f"move the waiting step out of {nested_in}",
                )
            )
        allowed = st.outcomes_for(inputs)
        for name in on_outcome:
            if name not in allowed:
                self.issues.append(
                    Issue(
                        "flow.unknown_outcome",
                        f"on_outcome routes '{name}', but step type '{type_name}' declares only: {', '.join(allowed)}",
                        self.loc((*path, "on_outcome", name), key=True),
                    )
                )
        if self.strict and nested_in is None:
            for name in allowed:
                if name not in DEFAULT_OUTCOMES and name not in on_outcome:
                    self.issues.append(
                        Issue(
                            "flow.unrouted_outcome",
                            f"step type '{type_name}' may end with outcome '{name}', which on_outcome does not route",
                            self.loc((*path, "type")),
                            f"say what follows it: on_outcome: {{{name}: continue}} (or skip_job, complete_job, fail)",
                        )
                    )
        if st.meta.retry is not None and self.check_inputs and type_name not in self._retry_checked:
            self._retry_checked.add(type_name)
            from aetherflow.spec.schema import retry_problems

            problems = retry_problems(st.meta.retry)
            if problems:
                self.issues.append(
                    Issue(
                        "plugin.bad_retry",
                        f"step type '{type_name}' ({st.source}) declares an invalid default retry: {'; '.join(problems)}",
                        self.loc((*path, "type")),
                    )
                )
        if st.meta.inputs_schema and self.check_inputs:
            validator = self._validators.get(type_name)
            if validator is None:
                from aetherflow.spec.schema import inputs_validator

                validator = self._validators[type_name] = inputs_validator(
                    _plain(st.meta.inputs_schema), check=not st.builtin
                )
            from aetherflow.spec.schema import validate_inputs

            self.issues.extend(
                validate_inputs(validator, _plain(inputs), file=self.file, positions=self.pos, base_path=(*path, "inputs"))
            )
        for name in st.meta.nested:
            self.check_nested(type_name, inputs.get(name), (*path, "inputs", name))

    def check_nested(self, parent: str, value: Any, path: tuple[str | int, ...]) -> None:
        """The step specs of one ``nested`` input: a mapping, or a list of mappings."""
        specs = [(value, path)] if isinstance(value, Mapping) else (
            [(s, (*path, i)) for i, s in enumerate(value) if isinstance(s, Mapping)] if isinstance(value, (list, tuple)) else [])
        for spec, npath in specs:
            t = spec.get("type")
            if isinstance(t, str):
                self.check_step(t, spec.get("inputs") or {}, {}, npath, None, nested_in=parent)


#: step type names other tools use for "run a command"
SHELL_NAMES = frozenset({"shell", "sh", "bash", "command", "cmd", "script", "exec", "run", "process"})


def unknown_type_hint(type_name: str, known: Sequence[str] | Mapping[str, Any]) -> str:
    """What to do about a step type nothing registers: the command step for the names other
    tools use, else a close name, else how to install the plugin that provides it."""
    if type_name.lower() in SHELL_NAMES:
        return ("commands run with the built-in step 'external.process': "
                "type: external.process, inputs: {command: 'ls -l | wc -l', shell: true} "
                "(or command: [ls, -l] without a shell)")
    import difflib  # only for a did-you-mean

    close = difflib.get_close_matches(type_name, sorted(known), n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    install = ("install its package in aetherflow's environment (pip install PACKAGE), or load a plugin "
               "folder with --plugin-path DIR (or AETHERFLOW_PLUGIN_PATHS); `aetherflow steps list` shows "
               "the step types there are")
    prefix = type_name.split(".", 1)[0] + "." if "." in type_name else ""
    if prefix and not any(name.startswith(prefix) for name in known):
        return f"no installed plugin provides '{prefix}*' step types: {install}"
    return f"if it comes from a plugin, that plugin is not installed: {install}"


def inputs_fingerprint(registry: Registry) -> bytes | None:
    """What step-input checks depend on, for the validation cache's key: the declared
    ``inputs_schema`` of every step type registered by a plugin (canonical JSON) and, for the
    built-in step modules (imported only when used), their files' size and mtime, so an edited
    built-in re-validates too. ``None`` if a schema cannot be serialised (nothing is cached)."""
    schemas: dict[str, Any] = {name: st.meta.inputs_schema for name, st in registry.loaded_steps.items() if not st.builtin}
    retries = {name: st.meta.retry for name, st in registry.loaded_steps.items() if not st.builtin and st.meta.retry}
    if retries:  # default retry policies are checked with the schema checks too
        schemas["\x00retry"] = retries
    try:
        text = json.dumps(schemas, sort_keys=True, default=_canonical, ensure_ascii=False)
    except (TypeError, ValueError):  # keys of mixed types, a cycle
        return None
    return (text + "|" + registry.deferred_files_stamp()).encode("utf-8")


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def _plain(value: Any) -> Any:
    from aetherflow.model import thaw

    return thaw(value)
