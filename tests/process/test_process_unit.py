"""``aetherflow.process`` and the ``external.process`` step, with real subprocesses.

Nothing is mocked. Synchronisation is by bounded polling for files and pids (``wait_until``),
never by sleeping a fixed time. A process counts as gone when it no longer exists or is a
zombie (an orphaned zombie may wait for a non-reaping PID 1 in containers).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest

from aetherflow.api import StepError, StepResult, StepTimeoutError
from aetherflow.context import CancelToken, StepContext
from aetherflow.errors import ExitCode, Interrupted
from aetherflow.model import EMPTY, freeze
from aetherflow.process import ProcessWatchdog, run_process, spawn, which
from aetherflow.steps.process import INPUTS_SCHEMA, OUTPUTS_BUDGET, ExternalProcess
from aetherflow.workspace import ensure, job_workspace

PATH = os.environ.get("PATH", "/usr/bin:/bin")
PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# helpers


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 :].split()[0]
    return state not in (b"Z", b"X")


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def kill_quietly(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., StepContext]:
    home = tmp_path / "home"
    home.mkdir()

    def make(
        *,
        step_id: str = "proc",
        env: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
        deadline: float | None = None,
        mask: Callable[[str], str] = lambda s: s,
    ) -> StepContext:
        ws = ensure(job_workspace(tmp_path / "work", "flow1", "job1", "run1"))
        base = {"PATH": PATH, "HOME": str(home), "LANG": "C.UTF-8"}
        return StepContext(
            run_id="run1",
            flow_id="flow1",
            job_id="job1",
            step_id=step_id,
            attempt=1,
            env=MappingProxyType(dict(env if env is not None else base)),
            params=EMPTY,
            connectors=EMPTY,
            ws=ws,
            log=logging.LoggerAdapter(logging.getLogger("test.process"), {}),
            cancel=cancel or CancelToken(),
            deadline=deadline,
            mask=mask,
        )

    return make


def run_step(ctx: StepContext, inputs: Mapping[str, Any]) -> StepResult:
    jsonschema.validate(dict(inputs), INPUTS_SCHEMA)
    frozen = freeze(dict(inputs))
    step = ExternalProcess(ctx.step_id, frozen, ctx, ctx.job_id)
    step.validate()
    return step.run(ctx, frozen)


def py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def test_inputs_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(INPUTS_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"command": ["x"], "shel": True}, INPUTS_SCHEMA)


# ---------------------------------------------------------------------------------------------
# command forms, env, cwd


def test_argv_list_captures_both_streams(make_ctx: Callable[..., StepContext]) -> None:
    res = run_step(make_ctx(), {"command": ["sh", "-c", "echo out; echo err >&2"]})
    assert res.status == "SUCCESS"
    out = res.outputs
    assert (out["stdout"], out["stderr"], out["exit_code"], out["attempts"]) == (
        "out\n",
        "err\n",
        0,
        1,
    )
    assert out["stdout_truncated"] is False and out["stdout_bytes"] == 4
    assert isinstance(out["pid"], int) and out["duration_seconds"] >= 0


def test_string_command_is_split_without_a_shell(make_ctx: Callable[..., StepContext]) -> None:
    res = run_step(make_ctx(), {"command": "printf '%s|' 'a b' '$HOME'", "args": ["c"]})
    assert res.outputs["stdout"] == "a b|$HOME|c|"


def test_shell_pipeline_and_quoted_args(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()
    res = run_step(ctx, {"command": "echo ${HOME} | tr a-z A-Z", "shell": True})
    assert res.outputs["stdout"] == ctx.env["HOME"].upper() + "\n"
    res = run_step(ctx, {"command": ["printf '%s\\n'"], "args": ["a b", "$HOME"], "shell": True})
    assert res.outputs["stdout"] == "a b\n$HOME\n"  # args are data, never shell code


def test_env_inherit_and_overrides(make_ctx: Callable[..., StepContext]) -> None:
    base = {"PATH": PATH, "HOME": "/nonexistent-home", "LANG": "C.UTF-8", "FOO": "bar"}
    ctx = make_ctx(env=base)
    dump = py("import json, os; print(json.dumps(dict(os.environ)))")
    env = json.loads(
        run_step(ctx, {"command": dump, "env": {"X": 1, "Y": True, "Z": None}}).outputs["stdout"]
    )
    assert env["FOO"] == "bar" and (env["X"], env["Y"], env["Z"]) == ("1", "true", "")
    assert env["AETHERFLOW_RUN_ID"] == "run1" and env["AETHERFLOW_FLOW_ID"] == "flow1"
    assert env["AETHERFLOW_JOB_ID"] == "job1" and env["AETHERFLOW_STEP_ID"] == "proc"
    assert env["AETHERFLOW_ATTEMPT"] == "1" and env["AETHERFLOW_WORKSPACE"] == str(ctx.workspace)

    clean = json.loads(
        run_step(ctx, {"command": dump, "inherit_env": False, "env": {"A": "b"}}).outputs["stdout"]
    )
    assert "FOO" not in clean
    assert {k: clean[k] for k in ("PATH", "HOME", "LANG", "A")} == {
        "PATH": PATH,
        "HOME": "/nonexistent-home",
        "LANG": "C.UTF-8",
        "A": "b",
    }
    assert "AETHERFLOW_STEP_ID" not in os.environ  # the runner's own env is never changed


def test_cwd_defaults_to_workspace_and_relative_is_under_artifacts(
    make_ctx: Callable[..., StepContext],
) -> None:
    ctx = make_ctx()
    cwd = py("import os; print(os.getcwd())")
    assert run_step(ctx, {"command": cwd}).outputs["stdout"].strip() == str(ctx.workspace.resolve())
    rel = run_step(ctx, {"command": cwd, "cwd": "."}).outputs["stdout"].strip()  # as in aetherflow-core
    assert rel == str((ctx.workspace / "artifacts").resolve())
    with pytest.raises(StepError) as err:
        run_step(ctx, {"command": cwd, "cwd": "no/such/dir"})
    assert err.value.code == "process.bad_cwd"


def test_command_not_found_is_a_step_error(make_ctx: Callable[..., StepContext]) -> None:
    with pytest.raises(StepError) as err:
        run_step(make_ctx(), {"command": ["definitely-not-a-command-af"]})
    assert err.value.code == "process.spawn_failed"
    assert "definitely-not-a-command-af" in err.value.message


def _tool(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


def test_which_finds_what_exec_would_run(tmp_path: Path) -> None:
    """The parent looks the command up as the child's exec would: first executable regular
    file along PATH, skipping files without x and directories of that name."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _tool(a / "tool", "#!/bin/sh\necho a\n", mode=0o644)  # not executable: exec skips it
    (b / "tool").mkdir(parents=True)  # a directory: exec skips it
    real = _tool(c / "tool", "#!/bin/sh\necho c\n")
    env = {"PATH": f"{a}:{b}:{c}"}
    assert which("tool", env) == str(real)
    assert which("no-such-tool-af", env) is None
    assert which("./tool", env) is None and which(str(real), env) is None  # a slash: no search
    assert which("tool", {"PATH": f"{a}:relative/dir:{c}"}) is None  # depends on the child's cwd
    assert which("tool", {"PATH": f":{c}"}) is None  # an empty entry is the cwd too
    assert which("sh", {}) in ("/bin/sh", "/usr/bin/sh")  # no PATH: the default path
    res = run_process(["tool"], cwd=tmp_path, env=env)
    assert (res.returncode, res.stdout) == (0, "c\n")


def test_command_that_exec_refuses_falls_back_to_the_search(tmp_path: Path) -> None:
    """An executable file exec cannot run (no #! line, not a binary: ENOEXEC) is skipped by
    the child's own PATH search, which then runs the next one; the parent's lookup must not
    change that."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    (bad).mkdir()
    (bad / "tool").write_bytes(b"\x7fELF garbage")
    (bad / "tool").chmod(0o755)
    _tool(good / "tool", "#!/bin/sh\necho good \"$@\"\n")
    env = {"PATH": f"{bad}:{good}"}
    assert which("tool", env) == str(bad / "tool")
    res = run_process(["tool", "x y"], cwd=tmp_path, env=env)
    assert (res.returncode, res.stdout) == (0, "good x y\n")
    with pytest.raises(OSError):
        run_process(["tool"], cwd=tmp_path, env={"PATH": str(bad)})


# ---------------------------------------------------------------------------------------------
# capture, truncation, file, inherit, discard


def test_200000_lines_on_both_streams_are_captured_completely(tmp_path: Path) -> None:
    code = """
        import sys
        for i in range(200000):
            sys.stdout.write(f"{i}\\n")
            sys.stderr.write(f"e{i}\\n")
    """
    res = run_process(py(code), cwd=tmp_path, env={"PATH": PATH}, timeout=120)
    assert res.returncode == 0 and not res.timed_out
    assert res.stdout is not None and res.stderr is not None
    out, err = res.stdout.splitlines(), res.stderr.splitlines()
    assert len(out) == 200000 and len(err) == 200000
    assert out[0] == "0" and out[-1] == "199999" and err[-1] == "e199999"
    assert res.stdout_bytes == len(res.stdout) and not res.stdout_truncated


def test_truncation_keeps_the_tail_and_says_so(make_ctx: Callable[..., StepContext]) -> None:
    code = "import sys\nfor i in range(2000): print(f'line {i:05d}')"
    res = run_step(make_ctx(), {"command": py(code), "log": {"max_capture_kb": 1}})
    out = res.outputs
    assert out["stdout_truncated"] is True
    assert out["stdout_bytes"] == 2000 * len("line 00000\n")
    assert len(out["stdout"].encode()) <= 1024 and out["stdout"].endswith("line 01999\n")
    assert out["stderr_truncated"] is False and out["stderr_bytes"] == 0


def test_outputs_stay_within_the_1_mib_step_limit(make_ctx: Callable[..., StepContext]) -> None:
    code = "import sys\nsys.stdout.write('o' * 900 * 1024)\nsys.stderr.write('e' * 900 * 1024)"
    out = run_step(make_ctx(), {"command": py(code)}).outputs
    size = len(json.dumps(dict(out), ensure_ascii=False).encode())
    assert size <= OUTPUTS_BUDGET < 1024 * 1024
    assert out["stdout_bytes"] == out["stderr_bytes"] == 900 * 1024
    assert out["stdout_truncated"] or out["stderr_truncated"]
    assert len(out["stdout"]) + len(out["stderr"]) < 2 * 900 * 1024


def test_file_mode_appends_both_streams(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(step_id="logged")
    inputs = {
        "command": ["sh", "-c", "echo out; echo err >&2"],
        "log": {"stdout": "file", "stderr": "file"},
    }
    out = run_step(ctx, inputs).outputs
    log = ctx.workspace / "artifacts" / "logged.log"
    assert out["log_file"] == str(log) and "stdout" not in out and "stderr" not in out
    run_step(ctx, inputs)
    assert sorted(log.read_text().splitlines()) == ["err", "err", "out", "out"]
    custom = run_step(
        ctx, {**inputs, "log": {"stdout": "file", "stderr": "capture", "file_path": "logs/x.log"}}
    )
    assert (ctx.workspace / "artifacts" / "logs" / "x.log").read_text() == "out\n"  # relative to artifacts/
    assert custom.outputs["stderr"] == "err\n"


def test_discard_mode(make_ctx: Callable[..., StepContext]) -> None:
    out = run_step(
        make_ctx(),
        {
            "command": ["sh", "-c", "echo out; echo err >&2"],
            "log": {"stdout": "discard", "stderr": "discard"},
        },
    ).outputs
    assert "stdout" not in out and "stderr" not in out and out["exit_code"] == 0


def test_inherit_goes_to_the_given_stream_never_stdout(tmp_path: Path) -> None:
    text_stream = io.StringIO()  # no file descriptor: copied through a pipe
    res = run_process(
        ["sh", "-c", "echo out; echo err >&2"],
        cwd=tmp_path,
        env={"PATH": PATH},
        stdout_mode="inherit",
        stderr_mode="inherit",
        inherit_stream=text_stream,
    )
    assert res.returncode == 0 and res.stdout is None
    assert sorted(text_stream.getvalue().splitlines()) == ["err", "out"]
    with open(tmp_path / "stderr.txt", "w+") as real:  # a real fd is handed to the child
        run_process(
            ["sh", "-c", "echo out; echo err >&2"],
            cwd=tmp_path,
            env={"PATH": PATH},
            stdout_mode="inherit",
            stderr_mode="inherit",
            inherit_stream=real,
        )
    assert sorted((tmp_path / "stderr.txt").read_text().splitlines()) == ["err", "out"]


# ---------------------------------------------------------------------------------------------
# success rules


def test_exit_codes_refused_with_masked_stderr_tail(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(mask=lambda s: s.replace("s3cret", "***"))
    script = "for i in $(seq 1 30); do echo line$i >&2; done; echo token=s3cret >&2; exit 3"
    with pytest.raises(StepError) as err:
        run_step(ctx, {"command": ["sh", "-c", script]})
    msg = err.value.message
    assert err.value.code == "process.exit_code"
    assert "exit code 3" in msg and "token=***" in msg and "s3cret" not in msg
    assert "line30" in msg and "line12" in msg and "line11\n" not in msg  # last 20 lines only
    ok = run_step(ctx, {"command": ["sh", "-c", "exit 3"], "success": {"exit_codes": [0, 3]}})
    assert ok.outputs["exit_code"] == 3


def test_killed_by_signal_is_named(make_ctx: Callable[..., StepContext]) -> None:
    with pytest.raises(StepError, match="killed by signal SIGKILL"):
        run_step(make_ctx(), {"command": ["sh", "-c", "kill -9 $$"]})


def test_require_and_forbid_files(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()  # relative to the job's artifacts directory; the command runs in the job workspace
    make = ["sh", "-c", "mkdir -p artifacts/out && touch artifacts/out/a.csv"]
    ok = run_step(ctx, {"command": make, "success": {"require_files": ["out/*.csv", "out/a.csv"]}})
    assert ok.status == "SUCCESS"
    with pytest.raises(StepError) as missing:
        run_step(ctx, {"command": make, "success": {"require_files": ["out/missing.txt"]}})
    assert (
        missing.value.code == "process.outputs_invalid"
        and "out/missing.txt" in missing.value.message
    )
    with pytest.raises(StepError, match="forbidden 'out/\\*.csv' exists"):
        run_step(ctx, {"command": make, "success": {"forbid_files": ["out/*.csv"]}})


def test_inner_retry_until_success(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()
    script = 'echo x >> tries; [ "$(wc -l < tries)" -ge 2 ]'
    res = run_step(
        ctx, {"command": ["sh", "-c", script], "retry": {"max_attempts": 3, "delay_seconds": 0}}
    )
    assert res.outputs["attempts"] == 2
    assert (ctx.workspace / "tries").read_text() == "x\nx\n"
    with pytest.raises(StepError):  # an exit code outside retry_on_exit_codes is not retried
        run_step(
            ctx,
            {
                "command": ["sh", "-c", "echo y >> other; exit 4"],
                "retry": {"max_attempts": 3, "delay_seconds": 0, "retry_on_exit_codes": [5]},
            },
        )
    assert (ctx.workspace / "other").read_text() == "y\n"


def test_retry_on_timeout_runs_again(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()
    inputs = {
        "command": ["sh", "-c", "echo x >> tries; exec sleep 30"],
        "timeout_seconds": 0.5,
        "retry": {"max_attempts": 2, "delay_seconds": 0, "retry_on_timeout": True},
    }
    with pytest.raises(StepTimeoutError, match="timed out after 0.5 s"):
        run_step(ctx, inputs)
    assert (ctx.workspace / "tries").read_text() == "x\nx\n"


def test_aetherflow_core_spellings_are_accepted(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()
    inputs = {
        "command": ["sh", "-c", 'echo ok > "$AETHERFLOW_OUTPUT_DIR/_SUCCESS"; echo 0123456789'],
        "idempotency": {
            "strategy": "atomic_dir",
            "temp_output_dir": "out/.tmp_run",
            "final_output_dir": "out/final",
        },
        "success": {
            "marker_file": "out/final/_SUCCESS",
            "required_globs": ["out/final/*"],
            "forbidden_files": ["out/final/ERROR"],
        },
        "retry": {"max_attempts": 1, "sleep_seconds": 0},
        "log": {"max_capture_bytes": 5},
    }
    out = run_step(ctx, inputs).outputs
    art = ctx.workspace / "artifacts"  # aetherflow-core resolves every relative path there
    assert (art / "out" / "final" / "_SUCCESS").read_text() == "ok\n"
    assert not (art / "out" / ".tmp_run").exists() and not (ctx.workspace / "out").exists()
    assert out["stdout"] == "0123456789\n" and out["stdout_truncated"] is False  # 5 bytes → 1 KiB


# ---------------------------------------------------------------------------------------------
# timeout, cancel, process trees

TREE = (
    "echo $$ > leader.pid; sleep 100 & echo $! >> kids.pid; sleep 100 & echo $! >> kids.pid; wait"
)


def test_timeout_kills_the_whole_tree(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx()
    ws = ctx.workspace
    started = time.monotonic()
    with pytest.raises(StepTimeoutError, match=r"timed out after 3 s") as err:
        run_step(
            ctx, {"command": ["sh", "-c", TREE], "timeout_seconds": 3, "kill_grace_seconds": 10}
        )
    assert err.value.code == "step.timeout"
    assert time.monotonic() - started < 12
    pids = read_pids(ws / "leader.pid") + read_pids(ws / "kids.pid")
    try:
        assert len(pids) == 3
        assert [p for p in pids if alive(p)] == []  # TERM worked: gone before the step returned
    finally:
        kill_quietly(pids)


def test_children_ignoring_term_are_killed_after_grace(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 100 & echo $! > kid.pid; sleep 100"
    started = time.monotonic()
    res = run_process(
        ["sh", "-c", script], cwd=tmp_path, env={"PATH": PATH}, timeout=1.5, kill_grace=0.5
    )
    pids = read_pids(tmp_path / "kid.pid") + [res.pid or 0]
    try:
        assert res.timed_out and res.returncode == -signal.SIGKILL
        assert time.monotonic() - started >= 2.0
        wait_until(lambda: not any(alive(p) for p in pids), what="TERM-ignoring tree to die")
    finally:
        kill_quietly(pids)


def test_deadline_from_context_wins_when_smaller(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(deadline=time.monotonic() + 1.0)
    # the context's deadline was already ticking before the spawn: the process gets <= 1 s, not 50
    with pytest.raises(StepTimeoutError, match=r"timed out after (?:1|0\.\d+) s"):
        run_step(ctx, {"command": ["sleep", "60"], "timeout_seconds": 50})


def _run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("SIGINT", Interrupted), ("SIGTERM", Interrupted), ("timeout", StepTimeoutError)],
)
def test_cancel_token_kills_the_group(
    make_ctx: Callable[..., StepContext], reason: str, expected: type[Exception]
) -> None:
    cancel = CancelToken()
    ctx = make_ctx(cancel=cancel)
    kids = ctx.workspace / "kids.pid"
    thread, box = _run_in_thread(lambda: run_step(ctx, {"command": ["sh", "-c", TREE]}))
    wait_until(lambda: kids.exists() and len(kids.read_text().split()) == 2, what="kids.pid")
    pids = read_pids(ctx.workspace / "leader.pid") + read_pids(kids)
    try:
        cancel.set(reason)
        thread.join(30)
        assert not thread.is_alive()
        assert isinstance(box.get("error"), expected), box
        if isinstance(box["error"], Interrupted):
            want = ExitCode.SIGINT if reason == "SIGINT" else ExitCode.SIGTERM
            assert box["error"].signal_exit == want
        assert [p for p in pids if alive(p)] == []
    finally:
        kill_quietly(pids)


def test_cancelled_before_start_runs_nothing(
    make_ctx: Callable[..., StepContext], tmp_path: Path
) -> None:
    cancel = CancelToken()
    cancel.set("SIGTERM")
    with pytest.raises(Interrupted):
        run_step(make_ctx(cancel=cancel), {"command": ["sh", "-c", "touch ran"]})
    res = run_process(["sh", "-c", "touch ran"], cwd=tmp_path, env={"PATH": PATH}, cancel=cancel)
    assert res.cancelled and res.pid is None and res.returncode is None
    assert not list(tmp_path.rglob("ran"))


def test_normal_exit_leaves_a_daemon_alone_without_hanging(tmp_path: Path) -> None:
    started = time.monotonic()
    res = run_process(
        ["sh", "-c", "sleep 60 & echo $! > d.pid; echo done"],
        cwd=tmp_path,
        env={"PATH": PATH},
        drain_timeout=0.5,
    )
    daemon = read_pids(tmp_path / "d.pid")
    try:
        assert res.returncode == 0 and res.stdout == "done\n"
        assert time.monotonic() - started < 10  # did not wait for the daemon's pipe
        assert alive(daemon[0])  # documented: a normal exit does not kill the group
    finally:
        kill_quietly(daemon)


# ---------------------------------------------------------------------------------------------
# idempotency


def test_marker_skips_the_second_run(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(step_id="once")
    inputs = {
        "command": ["sh", "-c", "echo run >> count; echo hello"],
        "idempotency": {"strategy": "marker"},
        "outputs": {"table": "t1"},
    }
    first = run_step(ctx, inputs).outputs
    marker = ctx.workspace / "manifests" / "once.done"
    assert marker.is_file() and json.loads(marker.read_text())["stdout"] == "hello\n"
    assert first["table"] == "t1" and "idempotent_skip" not in first
    second = run_step(ctx, inputs).outputs
    assert (ctx.workspace / "count").read_text() == "run\n"  # executed once
    assert (
        second["idempotent_skip"] is True
        and second["stdout"] == "hello\n"
        and second["exit_code"] == 0
    )
    marker.write_text("")  # a marker written by another tool still means "done"
    assert run_step(ctx, inputs).outputs["idempotent_skip"] is True
    assert (ctx.workspace / "count").read_text() == "run\n"


def test_atomic_dir_publishes_only_on_success(make_ctx: Callable[..., StepContext]) -> None:
    ctx = make_ctx(step_id="export")
    ws = ctx.workspace / "artifacts"  # target_dir is relative to it
    (ws / "out").mkdir(parents=True)
    fail = {
        "command": ["sh", "-c", 'echo part > "$AETHERFLOW_STAGING_DIR/x.txt"; exit 1'],
        "idempotency": {"strategy": "atomic_dir", "target_dir": "out/final"},
    }
    with pytest.raises(StepError):
        run_step(ctx, fail)
    assert os.listdir(ws / "out") == []  # nothing published, staging removed

    script = 'echo run >> count; echo data > "$AETHERFLOW_STAGING_DIR/x.txt"'
    ok = {
        "command": ["sh", "-c", script],
        "idempotency": {"strategy": "atomic_dir", "target_dir": "out/final"},
        "success": {"require_files": ["out/final/x.txt"]},
    }
    out = run_step(ctx, ok).outputs
    assert (ws / "out" / "final" / "x.txt").read_text() == "data\n"
    assert os.listdir(ws / "out") == ["final"] and out["target_dir"] == str(ws / "out" / "final")
    again = run_step(ctx, ok).outputs
    assert again["idempotent_skip"] is True and (ctx.workspace / "count").read_text() == "run\n"
    replace = {
        **ok,
        "idempotency": {
            "strategy": "atomic_dir",
            "target_dir": "out/final",
            "skip_if_exists": False,
        },
    }
    run_step(ctx, replace)
    assert (ctx.workspace / "count").read_text() == "run\nrun\n" and os.listdir(ws / "out") == ["final"]


# ---------------------------------------------------------------------------------------------
# parent death: the runner is SIGKILLed


def _start_runner(tmp_path: Path, body: str) -> subprocess.Popen[bytes]:
    header = "from aetherflow.process import ProcessWatchdog, default_watchdog, run_process\n"
    code = header + f"ENV = {{'PATH': {PATH!r}}}\n" + textwrap.dedent(body)
    env = {"PATH": PATH, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([PY, "-c", code], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)


def _kill_runner(runner: subprocess.Popen[bytes], pid_files: list[Path]) -> list[int]:
    wait_until(
        lambda: all(p.exists() for p in pid_files) or runner.poll() is not None, what="pid files"
    )
    assert runner.poll() is None, "runner stand-in exited early"
    pids = [pid for p in pid_files for pid in read_pids(p)]
    runner.kill()
    runner.wait(10)
    return pids


def test_sigkill_of_runner_kills_child_and_grandchild(tmp_path: Path) -> None:
    runner = _start_runner(
        tmp_path,
        """
        wd = default_watchdog()
        assert wd.start()
        with open("watchdog.tmp", "w") as fh:
            fh.write(str(wd.pid))
        import os; os.rename("watchdog.tmp", "watchdog.pid")
        run_process(["sh", "-c", "sleep 300 & echo $! > g.tmp; mv g.tmp grandchild.pid; sleep 300"],
                    cwd=".", env=ENV, stdout_mode="discard", stderr_mode="discard", kill_grace=2)
        """,
    )
    try:
        pids = _kill_runner(runner, [tmp_path / "grandchild.pid", tmp_path / "watchdog.pid"])
    finally:
        runner.kill()
    grandchild, watchdog = pids
    try:
        wait_until(lambda: not alive(grandchild), timeout=10, what="grandchild to die")
        wait_until(lambda: not alive(watchdog), timeout=10, what="watchdog to exit")
    finally:
        kill_quietly([grandchild])


def test_sigkill_of_runner_without_watchdog_uses_parent_death_signal(tmp_path: Path) -> None:
    runner = _start_runner(
        tmp_path,
        """
        run_process(["sh", "-c", "echo $$ > c.tmp; mv c.tmp child.pid; exec sleep 300"], cwd=".",
                    env=ENV, watchdog=ProcessWatchdog(executable=""))
        """,
    )
    try:
        (child,) = _kill_runner(runner, [tmp_path / "child.pid"])
    finally:
        runner.kill()
    try:
        wait_until(lambda: not alive(child), timeout=10, what="child to die of PDEATHSIG")
    finally:
        kill_quietly([child])


# ---------------------------------------------------------------------------------------------
# the watchdog on its own


def _group_with_grandchild(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], list[int]]:
    proc = spawn(
        ["sh", "-c", f"sleep 300 & echo $! > {name}.tmp; mv {name}.tmp {name}; wait"],
        cwd=tmp_path,
        env={"PATH": PATH},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        parent_death_signal=False,
    )
    wait_until(lambda: (tmp_path / name).exists(), what=name)
    return proc, [proc.pid, *read_pids(tmp_path / name)]


def test_watchdog_kills_registered_groups_at_eof_and_restarts(tmp_path: Path) -> None:
    wd = ProcessWatchdog()
    assert wd.start() and wd.pid is not None
    first_pid = wd.pid
    os.kill(first_pid, signal.SIGKILL)  # the helper dies: the next registration restarts it
    wait_until(lambda: not alive(first_pid), what="watchdog to die")
    proc, pids = _group_with_grandchild(tmp_path, "a.pid")
    kept, kept_pids = _group_with_grandchild(tmp_path, "b.pid")
    try:
        assert wd.register(proc.pid, 1.0)
        assert wd.register(kept.pid, 1.0)
        assert wd.pid not in (None, first_pid)
        wd.unregister(kept.pid)
        wd.close()  # EOF, as if this process had died
        wait_until(lambda: not any(alive(p) for p in pids), what="registered group to die")
        assert all(alive(p) for p in kept_pids)  # unregistered: left alone
    finally:
        kill_quietly(pids + kept_pids)
        proc.wait(10)
        kept.wait(10)

