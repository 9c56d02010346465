#!/usr/bin/env python3
"""aetherflow benchmarks: whole-process wall time and peak memory of the `aetherflow` CLI.

    python bench/run.py            # every scenario, full repetitions (several minutes)
    python bench/run.py --quick    # every scenario, fewer repetitions
    python bench/run.py --smoke    # 1 repetition of 3 tiny scenarios, not judged (seconds; used by a test)
    python bench/run.py --json     # also write bench/results/latest.json

Each scenario generates its flow files in its own temporary AETHERFLOW_HOME, makes one untimed
warm-up run there (so the store exists, as it does under cron) and, for aetherflow's run
scenarios, an untimed ``run --dry-run`` of the scenario's flow (under cron the same file ran
before, so the validation and plugin caches know it; ``run_1000_cold`` switches both off), then
times N child processes.
For each it prints the median, min and max wall time, the per-unit cost (what the scenario adds
per step, job or run over a 1-step run), the median peak RSS of the child (``os.wait4``), the
target and the verdict.

The state store runs with ``synchronous=FULL``, so every state change costs one fsync of the
SQLite WAL on the filesystem under test (the header prints what one small commit costs there).
When /dev/shm is a tmpfs the scenarios that record steps are repeated with the store there,
still ``synchronous=FULL`` but with fsync costing nothing: those ``[tmpfs]`` rows are the
engine's own cost, and the "disk adds" column of the disk rows is the difference, what
durability costs on this disk. A result is ``pass`` when it meets the target as written,
``disk`` when only the disk's share makes it miss (its ``[tmpfs]`` row passes), else ``FAIL``.

Unless ``--in-place`` (or ``--smoke``) is given, this checkout is pip-installed into a fresh
venv and that install is timed, so the interpreter starts with only our own dependencies on
its path, exactly as the comparison tool does in its venv.

When ``aetherflow-core==0.0.14`` can be installed into a temporary venv (``pip``, short
timeout), the scenarios it can run are run on it too, alternating with ours repetition by
repetition in this one invocation, and the ratios are printed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CORE_VERSION = "0.0.14"
Argv = Callable[[int, bool], tuple[list[str], tuple[int, ...]]]  # (repetition, last) -> argv, exit codes
HEADER = ("scenario", "median", "min", "max", "per unit", "disk adds", "peak RSS", "target", "result")


# ----------------------------------------------------------------------------------- processes


@dataclass
class Sample:
    wall: float
    rss_kb: int
    code: int


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Sample:
    """Run one child; wall time from spawn to reaped, peak RSS of that child only."""
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(wall, int(usage.ru_maxrss), proc.returncode)


def child_cost(n: int = 40) -> float:
    """Median wall time to spawn and reap `true`: the child's own run time, from Python. The
    program is looked up first (as aetherflow does), so the child's own PATH search is not in it."""
    argv = [shutil.which("true") or "true"]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def commit_cost(directory: Path, n: int = 60) -> float:
    """Median cost of one small SQLite transaction in WAL mode with synchronous=FULL in ``directory``."""
    path = directory / "fsync-probe.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER, b TEXT)")
        # steady state: the WAL already has room, so commits overwrite it instead of growing it
        db.execute("PRAGMA synchronous=OFF")
        for i in range(4 * n):
            db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 64))
        db.execute("PRAGMA wal_checkpoint(RESTART)")
        db.execute("PRAGMA synchronous=FULL")
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 64))
            db.execute("COMMIT")
            times.append(time.perf_counter() - t0)
    finally:
        db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return statistics.median(times)


# ------------------------------------------------------------------------------------- flows


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _head(flow_id: str, home: Path, core: bool) -> list[str]:
    lines = ["version: 1", "flow:", f"  id: {flow_id}"]
    if core:  # aetherflow-core keeps state and work under /tmp unless told otherwise
        lines += [f"  workspace: {{root: '{home / 'work'}', cleanup_policy: never}}",
                  f"  state: {{backend: sqlite, path: '{home / 'core-state.db'}'}}"]
    return lines + ["jobs:"]


def _noop(core: bool) -> str:
    # aetherflow-core has no `noop`; its cheapest built-in is a one-item check_items
    return "check_items, inputs: {items: [1]}" if core else "noop"


def flow_steps(path: Path, n: int, *, core: bool, home: Path, last: str | None = None) -> Path:
    lines = _head(f"steps_{n}", home, core) + ["  - id: j", "    steps:"]
    for i in range(n - (1 if last else 0)):
        lines.append(f"      - {{id: s{i}, type: {_noop(core)}}}")
    if last:
        lines.append(f"      - {{id: s{n - 1}, type: {last}}}")
    return _write(path, lines)


def flow_process(path: Path, n: int, *, core: bool, home: Path) -> Path:
    lines = _head(f"process_{n}", home, core) + ["  - id: j", "    steps:"]
    lines += [f"      - {{id: p{i}, type: external.process, inputs: {{command: [\"true\"]}}}}" for i in range(n)]
    return _write(path, lines)


def flow_with_lock(path: Path, n: int, *, core: bool, home: Path) -> Path:
    inner = "{type: check_items, inputs: {items: [1]}}" if core else "{type: noop}"
    lines = _head(f"with_lock_{n}", home, core) + ["  - id: j", "    steps:"]
    lines += [f"      - {{id: l{i}, type: with_lock, inputs: {{lock_key: bench, step: {inner}}}}}" for i in range(n)]
    return _write(path, lines)


def flow_chain(path: Path, n: int, *, core: bool, home: Path) -> Path:
    lines = _head(f"chain_{n}", home, core)
    for i in range(n):
        dep = f", depends_on: [j{i - 1}]" if i else ""
        lines.append(f"  - {{id: j{i}{dep}, steps: [{{id: s, type: {_noop(core)}}}]}}")
    return _write(path, lines)


# ------------------------------------------------------------------------------------ runners


@dataclass
class Impl:
    """How to call one implementation of the CLI."""

    name: str
    cmd: list[str]
    core: bool = False
    python: str = sys.executable  # the interpreter the script runs on (the `python -c pass` row)

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERFLOW_")}
        env.update(AETHERFLOW_HOME=str(home), NO_COLOR="1")
        # an installed package has its bytecode compiled (see ensure_bytecode); without
        # PYTHONDONTWRITEBYTECODE the core venv writes its own caches during the warm-up run
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.core:  # its own venv only: a PYTHONPATH would put our `aetherflow` package first
            env.pop("PYTHONPATH", None)
            env.pop("PYTHONHOME", None)
            env.update(AETHERFLOW_LOG_LEVEL="WARNING", AETHERFLOW_WORK_ROOT=str(home / "work"),
                       AETHERFLOW_STATE_ROOT=str(home / "state"))
        return env

    def run_args(self, flow: Path, run_id: str) -> list[str]:
        if self.core:
            return [*self.cmd, "run", "--flow-yaml", str(flow), "--run-id", run_id]
        return [*self.cmd, "run", str(flow), "--run-id", run_id]

    def validate_args(self, flow: Path) -> list[str]:
        return [*self.cmd, "validate", "--flow-yaml", str(flow)] if self.core else [*self.cmd, "validate", str(flow)]


def our_impl() -> Impl:
    script = Path(sys.executable).with_name("aetherflow")
    if script.exists():
        return Impl("aetherflow", [str(script)])
    found = shutil.which("aetherflow")
    return Impl("aetherflow", [found] if found else [sys.executable, "-m", "aetherflow"])


def ensure_bytecode() -> str:
    """Compile our package as ``pip install`` does for a wheel: an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise recompile every module in every timed process."""
    import compileall

    try:
        import aetherflow
    except ImportError:
        return "aetherflow is not importable from this interpreter"
    root = Path(aetherflow.__file__).parent
    try:
        ok = compileall.compile_dir(str(root), quiet=2)
    except OSError as exc:
        return f"could not compile {root.name}/: {exc}"
    return "" if ok else f"some modules of {root.name}/ did not compile"


def install_venv(venv: Path, requirement: str, what: str, timeout: float) -> tuple[Path | None, str]:
    """A fresh venv with ``requirement`` pip-installed (bytecode compiled, as pip does): its
    ``aetherflow`` script, or None and why not."""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=timeout)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               requirement]
        proc = subprocess.run(pip, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"venv/pip install did not finish within {timeout:g} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not create a venv: {exc}"
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if not ln.startswith("WARNING")]
        return None, f"pip install {what} failed: {tail[-1] if tail else proc.returncode}"
    exe = venv / "bin" / "aetherflow"
    if not exe.exists():
        return None, f"{what} installed no `aetherflow` script"
    return exe, ""


def install_core(workdir: Path, timeout: float) -> tuple[Impl | None, str]:
    exe, why = install_venv(workdir / "core-venv", f"aetherflow-core=={CORE_VERSION}", f"aetherflow-core=={CORE_VERSION}",
                            timeout)
    return (Impl(f"aetherflow-core {CORE_VERSION}", [str(exe)], core=True, python=str(exe.with_name("python")))
            if exe else None), why


def install_ours(workdir: Path, timeout: float) -> tuple[Impl | None, str]:
    """This checkout, installed the way aetherflow-core is: ``pip install`` of the project into a
    fresh venv (a wheel build, not editable). Both tools then start from the same interpreter
    with only their own dependencies on the path; the interpreter this script runs under may
    load .pth files of unrelated packages at every start-up."""
    exe, why = install_venv(workdir / "af-venv", str(ROOT), "this checkout", timeout)
    return (Impl("aetherflow", [str(exe)], python=str(exe.with_name("python"))) if exe else None), why


# ---------------------------------------------------------------------------------- scenarios


@dataclass
class Result:
    name: str
    impl: str
    walls: list[float]
    rss_kb: list[int]
    unit: str = ""
    units: int = 0
    per_unit_ms: float | None = None
    disk_ms: float | None = None  # what the disk adds over the [tmpfs] row (per unit when there is one)
    target: str = ""
    target_s: float | None = None  # applies to per_unit_ms when unit is set, else to the median
    verdict: str = ""
    note: str = ""
    commits_per_unit: float | None = None
    commit_ms: float | None = None  # cost of one synchronous=FULL commit, probed before the scenario
    child_ms: float | None = None  # spawning and reaping `true`, probed before the scenario (when subtracted)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)


@dataclass
class Scenario:
    """A timed command. ``prepare(impl, home)`` writes files and returns a function that gives the
    argv (and the exit codes allowed) of repetition i (and whether it is the last one)."""

    key: str
    title: str
    prepare: Callable[[Impl, Path], Argv]
    heavy: bool = False
    unit: str = ""
    units: int = 0
    target_s: float | None = None
    target: str = ""
    core_ok: bool = True
    steps: bool = False  # repeated on tmpfs
    fixed: str = "run_1"  # per-unit cost is measured over this scenario's median
    subtract_child: bool = False
    env: tuple[tuple[str, str], ...] = ()  # extra environment for aetherflow (not the comparison)


def _warm(impl: Impl, home: Path) -> None:
    """One untimed 1-step run: creates the store (schema migration) as a first cron run would."""
    flow = flow_steps(home / "warm.yaml", 1, core=impl.core, home=home)
    spawn(impl.run_args(flow, "warm"), impl.env(home), home, home / "log.txt")


def prep_version(impl: Impl, home: Path) -> Argv:
    return lambda i, last: ([*impl.cmd, "--version"], (0,))


def prep_help(impl: Impl, home: Path) -> Argv:
    return lambda i, last: ([*impl.cmd, "--help"], (0,))


def prep_python(impl: Impl, home: Path) -> Argv:
    return lambda i, last: ([impl.python, "-c", "pass"], (0,))


def prep_validate(impl: Impl, home: Path) -> Argv:
    flow = flow_steps(home / "v1000.yaml", 1000, core=impl.core, home=home)
    return lambda i, last: (impl.validate_args(flow), (0,))


def prep_run(n: int, maker: Callable[..., Path] = flow_steps) -> Callable[[Impl, Path], Argv]:
    def prep(impl: Impl, home: Path) -> Argv:
        flow = maker(home / f"flow{n}.yaml", n, core=impl.core, home=home)
        _warm(impl, home)
        if not impl.core:  # cron runs the same file every time: its caches already know it
            spawn([*impl.cmd, "run", str(flow), "--dry-run"], impl.env(home), home, home / "log.txt")
        return lambda i, last: (impl.run_args(flow, f"bench-{i}"), (0,))

    return prep


def prep_resume(impl: Impl, home: Path) -> Argv:
    """A 10,000-step run whose last step (`test -f marker`) fails; each repetition resumes it:
    9,999 steps are restored, the last one runs again. The last repetition creates the marker,
    so that one resume succeeds; the others fail again, leaving the run resumable."""
    marker = home / "marker"
    last = f"external.process, inputs: {{command: [test, -f, '{marker}']}}"
    flow = flow_steps(home / "resume.yaml", 10_000, core=impl.core, home=home, last=last)
    _warm(impl, home)
    first = spawn(impl.run_args(flow, "resumed"), impl.env(home), home, home / "log.txt")
    if first.code == 0:
        raise RuntimeError("resume scenario: the first run should have failed")

    def argv(i: int, last: bool) -> tuple[list[str], tuple[int, ...]]:
        if last:
            marker.write_text("ok", encoding="utf-8")
            ok: tuple[int, ...] = (0,)
        else:
            ok = (1,) if not impl.core else tuple(range(1, 256))
        if impl.core:
            return impl.run_args(flow, "resumed"), ok
        return [*impl.cmd, "resume", "resumed"], ok

    return argv


def prep_runs_list(impl: Impl, home: Path) -> Argv:
    populate_runs(home / "state.db", 10_000)
    return lambda i, last: ([*impl.cmd, "runs", "list"], (0,))


def populate_runs(path: Path, n: int) -> None:
    """10,000 recorded runs through the store's own create_run (synchronous=OFF while filling:
    a bench shortcut, the rows and indexes are the same)."""
    sys.path.insert(0, str(ROOT))
    from aetherflow.events import Event
    from aetherflow.state.sqlite import SqliteStore
    from aetherflow.state.store import RunRecord

    text = "version: 1\nflow:\n  id: f\njobs:\n" + "".join(f"  - {{id: j{i}, steps: [{{id: s, type: noop}}]}}\n" for i in range(20))
    store = SqliteStore(path)
    store._db.execute("PRAGMA synchronous=OFF")  # noqa: SLF001 - bench shortcut, see docstring
    t0 = time.time() - n * 60
    statuses = ("SUCCESS", "SUCCESS", "SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED")
    try:
        for i in range(n):
            created = t0 + i * 60
            rid = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created)) + f"-{i:06x}"
            flow_id = f"flow_{i % 7}"
            rec = RunRecord(run_id=rid, flow_id=flow_id, flow_file=f"/flows/{flow_id}.yaml", flow_sha256="0" * 64,
                            flow_text=text, params={"date": "2026-11-20"}, status=statuses[i % len(statuses)], pid=1,
                            host="bench", created_at=created, started_at=created, updated_at=created + 5,
                            finished_at=created + 5, workspace_root="/tmp/work")
            store.create_run(rec, Event(name="run.started", run_id=rid, ts=created, flow_id=flow_id))
    finally:
        store.close()


SCENARIOS: list[Scenario] = [
    Scenario("python", "python -c pass (interpreter start-up, reference)", prep_python, core_ok=False),
    Scenario("version", "aetherflow --version", prep_version, target_s=0.100, target="< 100 ms", core_ok=False),
    Scenario("help", "aetherflow --help", prep_help),
    Scenario("validate_1000", "validate, 1,000 steps", prep_validate, target_s=0.300, target="< 0.3 s"),
    Scenario("run_1", "run, 1 no-op step", prep_run(1), target_s=0.250, target="< 250 ms", steps=True),
    Scenario("run_100", "run, 100 no-op steps", prep_run(100), unit="step", units=99, target_s=0.0005,
             target="< 0.5 ms/step", steps=True),
    Scenario("run_1000", "run, 1,000 no-op steps", prep_run(1000), unit="step", units=999, target_s=0.0005,
             target="< 0.5 ms/step", steps=True, heavy=True),
    Scenario("run_1000_cold", "run, 1,000 no-op steps, caches off", prep_run(1000), unit="step", units=999,
             target_s=0.0005, target="< 0.5 ms/step", heavy=True,
             env=(("AETHERFLOW_VALIDATION_CACHE", "0"), ("AETHERFLOW_PLUGIN_CACHE", "0"))),
    Scenario("run_10000", "run, 10,000 no-op steps", prep_run(10_000), unit="step", units=9_999, target_s=0.0005,
             target="< 0.5 ms/step", steps=True, heavy=True),
    Scenario("process_100", "run, 100 external.process `true`", prep_run(100, flow_process), unit="step", units=100,
             target_s=0.002, target="< 2 ms/step + child", steps=True, subtract_child=True),
    Scenario("with_lock_200", "run, 200 with_lock steps", prep_run(200, flow_with_lock), unit="step", units=200,
             target_s=0.001, target="< 1 ms/step", steps=True),
    Scenario("chain_200", "run, 200-job dependency chain", prep_run(200, flow_chain), unit="job", units=199,
             target_s=0.001, target="< 1 ms/job", steps=True),
    Scenario("resume_10000", "resume: skip 9,999 steps, re-run 1", prep_resume, target_s=2.0, target="< 2 s",
             steps=True, heavy=True),
    Scenario("runs_list", "runs list over 10,000 runs", prep_runs_list, target_s=0.500, target="< 500 ms", core_ok=False),
]
SMOKE = ("version", "run_1", "run_100")


# -------------------------------------------------------------------------------- measurement


def measure(sc: Scenario, impls: list[Impl], reps: int, base: Path, tag: str) -> dict[str, Result]:
    """Time ``sc`` on every implementation, alternating them repetition by repetition."""
    homes: dict[str, Path] = {}
    argvs = {}
    for impl in impls:
        home = Path(tempfile.mkdtemp(prefix=f"{sc.key}-{'core' if impl.core else 'af'}-", dir=base))
        homes[impl.name] = home
        argvs[impl.name] = sc.prepare(impl, home)
    results = {impl.name: Result(sc.title + tag, impl.name, [], []) for impl in impls}
    for rep in range(reps):
        order = impls if rep % 2 == 0 else list(reversed(impls))
        for impl in order:
            home = homes[impl.name]
            argv, ok = argvs[impl.name](rep, rep == reps - 1)
            env = impl.env(home)
            if not impl.core:
                env.update(sc.env)
            s = spawn(argv, env, home, home / "log.txt")
            if s.code not in ok:
                log = (home / "log.txt").read_text(encoding="utf-8", errors="replace")[-1500:]
                raise RuntimeError(f"{sc.key} on {impl.name}: exit {s.code}, expected {ok}:\n{log}")
            results[impl.name].walls.append(s.wall)
            results[impl.name].rss_kb.append(s.rss_kb)
    for impl in impls:
        r = results[impl.name]
        if not impl.core:
            r.commits_per_unit = _commits_per_unit(sc, homes[impl.name])
        shutil.rmtree(homes[impl.name], ignore_errors=True)
    return results


def _commits_per_unit(sc: Scenario, home: Path) -> float | None:
    """Durable transactions per unit, counted as history rows (each state change writes one)."""
    db = home / "state.db"
    if not sc.units or not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT count(*) FROM history WHERE run_id='bench-0'").fetchone()[0]
        warm = con.execute("SELECT count(*) FROM history WHERE run_id='warm'").fetchone()[0]
    finally:
        con.close()
    return (rows - warm) / sc.units if rows else None


def finish(r: Result, sc: Scenario, fixed: Result | None, child: float) -> None:
    r.target, r.target_s, r.unit, r.units = sc.target, sc.target_s, sc.unit, sc.units
    if sc.unit and fixed is not None:
        per = (r.median - fixed.median) / sc.units
        if sc.subtract_child:
            per -= child
            r.child_ms = child * 1e3
            r.note = f"child `true` {child * 1e3:.2f} ms subtracted"
        r.per_unit_ms = per * 1e3


def _value(r: Result) -> float | None:
    """What the target applies to, in seconds: the per-unit cost, else the median."""
    if r.unit:
        return None if r.per_unit_ms is None else r.per_unit_ms / 1e3
    return r.median


def judge(r: Result, engine: Result | None) -> None:
    """Verdict against the target; ``engine`` is the same scenario's [tmpfs] row, if any."""
    if engine is not None:
        d, e = _value(r), _value(engine)
        if d is not None and e is not None:
            r.disk_ms = (d - e) * 1e3
    value = _value(r)
    if r.target_s is None or value is None:
        return
    if value <= r.target_s:
        r.verdict = "pass"
    elif engine is not None and (e_value := _value(engine)) is not None and e_value <= r.target_s:
        r.verdict = "disk"
    else:
        r.verdict = "FAIL"


def process_bounds(rows: list[Result], core_rows: dict[str, Result]) -> list[dict[str, float | str]]:
    """For each pass that timed the 1-step run, 100 no-op steps and 100 ``external.process``
    steps: the fastest the process scenario could be if a process step cost only what a no-op
    step costs (recording it durably, calling it, recording its result) plus spawning and
    reaping ``true`` from Python (probed next to the scenario), and the best ratio to
    aetherflow-core that allows."""
    by_name = {r.name: r for r in rows}
    out: list[dict[str, float | str]] = []
    for tag in ("", " [tmpfs]"):
        fixed = by_name.get(_title("run_1") + tag)
        noop = by_name.get(_title("run_100") + tag)
        proc = by_name.get(_title("process_100") + tag)
        core = core_rows.get(_title("process_100") + tag)
        if fixed is None or noop is None or proc is None or noop.per_unit_ms is None or proc.child_ms is None:
            continue
        child = proc.child_ms / 1e3
        # the 1-step run holds one no-op step already: the process run replaces it
        floor = fixed.median + (proc.units - 1) * noop.per_unit_ms / 1e3 + proc.units * child
        row: dict[str, float | str] = {"scenario": proc.name, "floor": floor, "measured": proc.median,
                                       "noop_step_ms": noop.per_unit_ms, "child_ms": child * 1e3}
        if core is not None:
            row["core"] = core.median
            row["best_ratio"] = core.median / floor
        out.append(row)
    return out


def _title(key: str) -> str:
    return next(s.title for s in SCENARIOS if s.key == key)


# ------------------------------------------------------------------------------------- report


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_ms(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return f"{x:.2f} ms/{unit}" if unit else f"{x:.2f} ms"


def table(rows: list[Result]) -> str:
    cells = [HEADER]
    for r in rows:
        cells.append((r.name, fmt_s(r.median), fmt_s(min(r.walls)), fmt_s(max(r.walls)),
                      fmt_ms(r.per_unit_ms, r.unit), fmt_ms(r.disk_ms, r.unit),
                      f"{statistics.median(r.rss_kb) / 1024:.0f} MiB", r.target or "—", r.verdict or "—"))
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(c)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine(base: Path) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "filesystem": fs_type(base),
    }


def fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def tmpfs_dir() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs":
        return shm
    return None


# --------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--smoke", action="store_true", help="1 repetition of 3 small scenarios, no comparison")
    ap.add_argument("--json", action="store_true", help="write bench/results/latest.json")
    ap.add_argument("--reps", type=int, help="repetitions of light scenarios (heavy ones get fewer)")
    ap.add_argument("--only", nargs="+", metavar="KEY", help="only these scenarios: " + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--state-dir", help="where the temporary AETHERFLOW_HOMEs go (default: the system temp dir)")
    ap.add_argument("--no-core", action="store_true", help="skip the aetherflow-core comparison")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the [tmpfs] engine-overhead rows")
    ap.add_argument("--in-place", action="store_true",
                    help="time the aetherflow of this interpreter's environment instead of a fresh venv install "
                         "of this checkout (always so with --smoke)")
    ap.add_argument("--pip-timeout", type=float, default=180.0, help="seconds for each venv install")
    args = ap.parse_args(argv)

    light = args.reps or (1 if args.smoke else 5 if args.quick else 9)
    heavy = 1 if args.smoke else max(1, min(light, 2 if args.quick else 3))
    keys = set(args.only or (SMOKE if args.smoke else [s.key for s in SCENARIOS]))
    scenarios = [s for s in SCENARIOS if s.key in keys]
    if args.only and "run_1" not in keys and any(s.unit for s in scenarios):
        scenarios.insert(0, next(s for s in SCENARIOS if s.key == "run_1"))  # per-unit costs need it

    work = Path(tempfile.mkdtemp(prefix="aetherflow-bench-", dir=args.state_dir))
    shm = None if (args.no_tmpfs or args.smoke) else tmpfs_dir()
    shm_work = Path(tempfile.mkdtemp(prefix="aetherflow-bench-", dir=shm)) if shm else None
    ours = our_impl()
    ours_note = "this environment's install (--in-place)" if args.in_place else "this environment's install (--smoke)"
    core_note = "skipped (--smoke)" if args.smoke else "skipped (--no-core)" if args.no_core else ""
    try:
        info = machine(work)
        commit = commit_cost(work)
        commit_shm = commit_cost(shm_work) if shm_work else None
        child = child_cost(10 if args.smoke else 40)
        if not (args.in_place or args.smoke):
            print("installing this checkout into a temporary venv ...", file=sys.stderr, flush=True)
            venv_ours, why = install_ours(work, args.pip_timeout)
            if venv_ours is None:
                ours_note = f"this environment's install: the venv install failed ({why})"
            else:
                ours, ours_note = venv_ours, "this checkout pip-installed into a fresh venv"
        if ours.python == sys.executable:
            why_not = ensure_bytecode()
            if why_not:
                print(f"warning: {why_not}; start-up times include compiling", file=sys.stderr)
        impls = [ours]
        if not core_note:
            print(f"installing aetherflow-core=={CORE_VERSION} into a temporary venv ...", file=sys.stderr, flush=True)
            core, why = install_core(work, args.pip_timeout)
            if core is None:
                core_note = f"skipped: {why}"
            else:
                impls.append(core)
                core_note = f"aetherflow-core {CORE_VERSION}, alternating with aetherflow"
        print("aetherflow benchmarks — whole-process wall time and peak RSS of the CLI")
        print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        print(f"store: SQLite WAL, synchronous=FULL; one commit on {info['filesystem']} costs {commit * 1e3:.2f} ms at start"
              + (f" (on tmpfs {commit_shm * 1e3:.3f} ms)" if commit_shm is not None else ""))
        print(f"aetherflow: {ours_note}")
        print(f"repetitions: {light} (heavy scenarios {heavy}); comparison: {core_note}")
        print(f"`true` as a child costs {child * 1e3:.2f} ms at start (probed again next to the process scenario)")
        print()

        ours_rows: list[Result] = []
        failed: list[str] = []
        core_rows: dict[str, Result] = {}
        passes = [("", work, commit)] + ([(" [tmpfs]", shm_work, commit_shm or 0.0)] if shm_work else [])
        for tag, base, cost in passes:
            fixed: Result | None = None
            for sc in scenarios:
                if tag and not sc.steps:
                    continue
                n = heavy if sc.heavy else light
                use = [i for i in impls if not i.core or sc.core_ok]
                if sc.unit:  # fsync latency drifts on a shared disk: probe it next to each scenario
                    cost = commit_cost(base)
                # and so does the cost of a child process
                child_here = child_cost(10 if args.smoke else 100) if sc.subtract_child else child
                print(f"  {sc.key}{tag}: {n} x {', '.join(i.name for i in use)}", file=sys.stderr, flush=True)
                try:
                    res = measure(sc, use, n, base, tag)
                except RuntimeError as exc:
                    print(f"  {sc.key}{tag}: ERROR {exc}", file=sys.stderr, flush=True)
                    failed.append(f"{sc.key}{tag}")
                    continue
                ours_r = res[ours.name]
                print(f"    {' / '.join(f'{k}: {fmt_s(v.median)}' for k, v in res.items())}", file=sys.stderr, flush=True)
                if sc.key == "run_1":
                    fixed = ours_r
                finish(ours_r, sc, fixed, child_here)
                ours_r.commit_ms = cost * 1e3
                ours_rows.append(ours_r)
                for impl in use:
                    if impl.core:
                        core_rows[ours_r.name] = res[impl.name]
        by_name = {r.name: r for r in ours_rows}
        if not args.smoke:  # one repetition says that a scenario runs, not how fast: no verdicts
            for r in ours_rows:
                judge(r, None if r.name.endswith(" [tmpfs]") else by_name.get(r.name + " [tmpfs]"))
        print(table(ours_rows))
        print()
        print("per unit: (median - median of the 1-step run) / units, for the same store location;")
        print("disk adds: this row minus its [tmpfs] row (same synchronous=FULL store, fsync free on tmpfs);")
        if args.smoke:
            print("result: not judged (--smoke checks that the scenarios run; one repetition is too noisy for a target)")
        else:
            print("result: pass = meets the target; disk = misses it only by what this disk adds; FAIL = misses it")
        print()
        ratios = []
        if core_rows:
            print(f"aetherflow vs aetherflow-core {CORE_VERSION} (medians, same machine, alternating runs)")
            cells = [("scenario", "aetherflow", "aetherflow-core", "ratio", ">= 3x")]
            for r in ours_rows:
                c = core_rows.get(r.name)
                if c is None:
                    continue
                ratio = c.median / r.median
                ratios.append({"scenario": r.name, "aetherflow": r.median, "core": c.median, "ratio": ratio,
                               "core_walls": c.walls, "core_rss_kb": c.rss_kb})
                cells.append((r.name, fmt_s(r.median), fmt_s(c.median), f"{ratio:.2f}x", "yes" if ratio >= 3 else "no"))
            widths = [max(len(c[i]) for c in cells) for i in range(5)]
            for n, c in enumerate(cells):
                print("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(c)))
                if n == 0:
                    print("  ".join("-" * w for w in widths))
            print()
        else:
            print(f"aetherflow-core comparison {core_note}")
        bounds = process_bounds(ours_rows, core_rows)
        if bounds:
            print("floor of the external.process scenario: a process step records what a no-op step records")
            print("and starts the command, so it cannot cost less than a no-op step plus spawning `true`")
            for b in bounds:
                line = (f"  {b['scenario']}: floor {fmt_s(float(b['floor']))} ({b['noop_step_ms']:.2f} + {b['child_ms']:.2f} ms"
                        f" a step), measured {fmt_s(float(b['measured']))}")
                if "best_ratio" in b:
                    line += f"; at the floor the ratio to aetherflow-core would be {float(b['best_ratio']):.2f}x"
                print(line)
            print()
        if args.json:
            RESULTS.mkdir(parents=True, exist_ok=True)
            doc = {"machine": info, "commit_ms": commit * 1e3, "commit_tmpfs_ms": commit_shm and commit_shm * 1e3,
                   "child_true_ms": child * 1e3, "repetitions": {"light": light, "heavy": heavy},
                   "comparison": core_note, "aetherflow": ours_note, "results": [asdict(r) | {"median": r.median} for r in ours_rows],
                   "core": ratios, "process_floor": bounds, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (RESULTS / "latest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            print(f"wrote {RESULTS / 'latest.json'}")
        if failed:
            print(f"scenarios that failed: {', '.join(failed)}")
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if shm_work:
            shutil.rmtree(shm_work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
