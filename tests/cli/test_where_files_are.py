"""Where a run's files are: `run -v` prints the paths a step wrote under its job's artifacts/,
`runs show` names each job's workspace directory and `runs show -v` lists its artifacts."""

from __future__ import annotations

import json
from pathlib import Path

FLOW = """
version: 1
flow: {id: files}
jobs:
  - id: make
    steps:
      - id: write
        type: external.process
        inputs: {command: [sh, -c, 'mkdir -p "$AETHERFLOW_WORKSPACE/artifacts/out" && echo a > "$AETHERFLOW_WORKSPACE/artifacts/a.csv" && echo bb > "$AETHERFLOW_WORKSPACE/artifacts/out/b.txt"']}
      - id: look
        type: external.process
        inputs: {command: [ls, artifacts]}
      - id: rewrite
        type: external.process
        inputs: {command: [sh, -c, 'echo changed > "$AETHERFLOW_WORKSPACE/artifacts/a.csv"']}
  - id: never
    depends_on: [make]
    when: "false"
    steps:
      - {id: s, type: noop}
"""


def test_run_verbose_prints_the_files_each_step_wrote(af, write_flow, home: Path) -> None:
    flow = write_flow(FLOW)
    res = af("run", str(flow), "-v", "--run-id", "r1")
    assert res.exit_code == 0, res.stderr
    art = home / "work" / "files" / "make" / "r1" / "artifacts"
    lines = res.stderr.splitlines()
    at = {ln.split()[1]: i for i, ln in enumerate(lines) if ln.startswith("done ")}
    assert lines[at["make.write"] + 1: at["make.write"] + 3] == [f"       wrote {art / 'a.csv'}",
                                                                 f"       wrote {art / 'out' / 'b.txt'}"]
    assert not lines[at["make.look"] + 1].lstrip().startswith("wrote")  # it wrote nothing
    assert lines[at["make.rewrite"] + 1] == f"       wrote {art / 'a.csv'}"
    quiet = af("run", str(flow), "--run-id", "r2")
    assert quiet.exit_code == 0 and quiet.stderr == ""  # silence without -v


def test_runs_show_names_each_jobs_workspace_and_lists_artifacts_with_v(af, write_flow, home: Path) -> None:
    flow = write_flow(FLOW)
    assert af("run", str(flow), "--run-id", "r1").exit_code == 0
    ws = home / "work" / "files" / "make" / "r1"
    shown = af("runs", "show", "r1")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    i = lines.index("  job make: SUCCESS")
    assert lines[i + 1] == f"    workspace {ws}"
    j = next(n for n, ln in enumerate(lines) if ln.startswith("  job never: SKIPPED"))
    assert not lines[j + 1].strip().startswith("workspace")  # it never started: no directory
    assert "artifacts/a.csv" not in shown.stdout
    verbose = af("runs", "show", "r1", "-v").stdout.splitlines()
    i = verbose.index("  job make: SUCCESS")
    assert verbose[i + 1: i + 4] == [f"    workspace {ws}", "      artifacts/a.csv (8 bytes)",
                                     "      artifacts/out/b.txt (3 bytes)"]
    doc = json.loads(af("runs", "show", "r1", "--json", "-v").stdout)
    jobs = {j["job_id"]: j for j in doc["jobs"]}
    assert jobs["make"]["workspace"] == str(ws) and jobs["never"]["workspace"] is None
    assert jobs["make"]["artifacts"] == [{"path": "artifacts/a.csv", "bytes": 8},
                                         {"path": "artifacts/out/b.txt", "bytes": 3}]
    assert "artifacts" not in json.loads(af("runs", "show", "r1", "--json").stdout)["jobs"][0]


def test_runs_show_says_when_a_workspace_was_removed(af, write_flow, home: Path) -> None:
    flow = write_flow(FLOW.replace("flow: {id: files}", "flow: {id: files, workspace: {cleanup_policy: on_success}}"))
    assert af("run", str(flow), "--run-id", "r1").exit_code == 0
    ws = home / "work" / "files" / "make" / "r1"
    assert not ws.exists()
    assert f"    workspace {ws} (removed)" in af("runs", "show", "r1").stdout.splitlines()


LAYOUT_FLOW = """
version: 1
flow: {id: renamed, workspace: {layout: {artifacts: out, manifests: meta}}}
jobs:
  - id: make
    steps:
      - id: write
        type: external.process
        inputs: {command: [sh, -c, 'mkdir -p out/sub && echo a > out/a.csv && echo bb > out/sub/b.txt && echo m > meta/m.json']}
"""


def test_a_renamed_artifacts_directory_is_the_one_listed(af, write_flow, home: Path) -> None:
    """`workspace.layout: {artifacts: out}`: `run -v` and `runs show -v` list the files of out/,
    not of a directory artifacts/ the job does not have (nor of the other sub-directories)."""
    flow = write_flow(LAYOUT_FLOW)
    res = af("run", str(flow), "-v", "--run-id", "r1")
    assert res.exit_code == 0, res.stderr
    ws = home / "work" / "renamed" / "make" / "r1"
    lines = res.stderr.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("done   make.write"))
    assert lines[i + 1: i + 4] == [f"       wrote {ws / 'out' / 'a.csv'}", f"       wrote {ws / 'out' / 'sub' / 'b.txt'}",
                                   "job    make SUCCESS"]
    verbose = af("runs", "show", "r1", "-v").stdout.splitlines()
    i = verbose.index("  job make: SUCCESS")
    assert verbose[i + 1: i + 4] == [f"    workspace {ws}", "      out/a.csv (2 bytes)", "      out/sub/b.txt (3 bytes)"]
    doc = json.loads(af("runs", "show", "r1", "--json", "-v").stdout)
    assert doc["jobs"][0]["artifacts"] == [{"path": "out/a.csv", "bytes": 2}, {"path": "out/sub/b.txt", "bytes": 3}]
