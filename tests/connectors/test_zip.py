"""zip / unzip through real runs: a round trip, and zip-slip / symlink escapes refused."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from aetherflow.connectors.archive import UnsafeArchiveError, member_parts

HEAD = """
version: 1
flow:
  id: files
  workspace: {root: work}
jobs:
"""


def job(name: str, *steps: str) -> str:
    return f"  - id: {name}\n    steps:\n" + "".join(steps)


def sh(step_id: str, script: str) -> str:
    script = script.replace('"', '\\"')
    return f"""      - id: {step_id}
        type: external.process
        inputs: {{command: ["sh", "-c", "{script}"]}}
"""


def test_round_trip(write_flow, run_flow, tmp_path: Path) -> None:
    text = HEAD + job(
        "pack",
        sh("make", "mkdir -p artifacts/data/sub artifacts/void && printf one > artifacts/data/a.txt "
                   "&& printf two > artifacts/data/sub/b.txt"),
        """      - id: zip_dir
        type: zip
        inputs: {source: data, output: bundle.zip}
      - id: zip_list
        type: zip
        inputs: {source: [data/a.txt, data/sub], output: out/list.zip, compression: stored}
      - id: unzip
        type: unzip
        inputs: {archive: bundle.zip, dest: restored}
      - id: unzip_again
        type: unzip
        inputs: {archive: bundle.zip, dest: restored}
      - id: unzip_default
        type: unzip
        inputs: {archive: out/list.zip}
      - id: empty
        type: zip
        inputs: {source: void, output: empty.zip}
""",
    ) + job(
        "missing",
        """      - id: z
        type: zip
        inputs: {source: [no/such/file.txt]}
""",
    )
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 1  # the `missing` job fails
    assert "source 'no/such/file.txt' does not exist" in run.step("missing", "z")["error"]

    z = run.step("pack", "zip_dir")["outputs"]
    bundle = Path(z["path"])
    assert z["files"] == 2 and z["bytes"] == bundle.stat().st_size
    assert z["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "sub/b.txt"]
        assert zf.read("sub/b.txt") == b"two"
        assert zf.getinfo("a.txt").compress_type == zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(run.step("pack", "zip_list")["outputs"]["path"]) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "sub/b.txt"]
        assert zf.getinfo("a.txt").compress_type == zipfile.ZIP_STORED

    u = run.step("pack", "unzip")["outputs"]
    dest = Path(u["dest"])
    assert u["files"] == 2 and u["bytes"] == 6 and sorted(u["names"]) == ["a.txt", "sub/b.txt"]
    assert (dest / "a.txt").read_text() == "one" and (dest / "sub" / "b.txt").read_text() == "two"
    assert run.step("pack", "unzip_again")["status"] == "SUCCESS"  # replaces the earlier extraction
    assert Path(run.step("pack", "unzip_default")["outputs"]["dest"]).name == "list"
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp files or dirs left
    empty = run.step("pack", "empty")
    assert empty["status"] == "SKIPPED" and empty["reason"] == "no files to zip"
    assert not (dest.parent / "empty.zip").exists()


def test_cross_job_artifacts(write_flow, run_flow) -> None:
    text = HEAD + job(
        "pack",
        sh("make", "mkdir -p artifacts/d && printf hi > artifacts/d/x.txt"),
        """      - id: z
        type: zip
        inputs: {source: d, output: d.zip}
        outputs: {bundle: "{{ result.path }}"}
""",
    ) + "  - id: later\n    depends_on: [pack]\n    steps:\n" + """      - id: u
        type: unzip
        inputs: {archive: "{{ jobs.pack.outputs.bundle }}", dest: got}
"""
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 0, run.result.stderr
    assert (Path(run.step("later", "u")["outputs"]["dest"]) / "x.txt").read_text() == "hi"


def _evil(path: Path, kind: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        if kind == "dotdot":
            zf.writestr("../x", "escaped")
        elif kind == "absolute":
            info = zipfile.ZipInfo("placeholder")
            info.filename = "/etc/x"  # ZipInfo() strips a leading slash; real attackers do not
            zf.writestr(info, "escaped")
        elif kind == "symlink":
            info = zipfile.ZipInfo("link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dotdot", "member '../x' climbs out of the destination with '..'"),
        ("absolute", "member '/etc/x' has an absolute path"),
        ("symlink", "member 'link' is a symbolic link"),
    ],
)
def test_zip_slip_is_refused(write_flow, run_flow, tmp_path: Path, kind: str, message: str) -> None:
    evil = _evil(tmp_path / f"{kind}.zip", kind)
    text = HEAD + job(
        "bad",
        sh("fetch", f"cp '{evil}' artifacts/evil.zip"),
        """      - id: unzip
        type: unzip
        inputs: {archive: evil.zip, dest: out}
""",
    )
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 1
    step = run.step("bad", "unzip")
    assert step["status"] == "FAILED"
    assert "archive 'evil.zip' refused, nothing extracted" in step["error"] and message in step["error"]
    work = tmp_path / "work"
    assert not list(work.rglob("ok.txt"))  # nothing at all was extracted
    assert not list(work.rglob("x")) and not (tmp_path / "x").exists()
    assert not [p for p in work.rglob(".out.*")]  # the temp directory is gone


def test_symlink_escapes_are_refused(write_flow, run_flow, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not take")
    text = HEAD + job(
        "leak",
        sh("make", f"mkdir -p artifacts/d && printf ok > artifacts/d/ok.txt && ln -s '{outside}/secret.txt' artifacts/d/leak"),
        """      - id: z
        type: zip
        inputs: {source: d, output: d.zip}
""",
    ) + job(
        "dirlink",
        sh("make", f"mkdir -p artifacts/e && ln -s '{outside}' artifacts/e/out"),
        """      - id: z
        type: zip
        inputs: {source: e, output: e.zip}
""",
    ) + job(
        "destlink",
        sh("make", f"ln -s '{outside}' artifacts/target && printf x > artifacts/x.txt"),
        """      - id: z
        type: zip
        inputs: {source: [x.txt], output: x.zip}
      - id: u
        type: unzip
        inputs: {archive: x.zip, dest: target}
""",
    )
    run = run_flow(write_flow(text))
    assert run.result.exit_code == 1
    assert "'leak' is a symlink pointing outside the workspace" in run.step("leak", "z")["error"]
    assert "'out' is a symlinked directory" in run.step("dirlink", "z")["error"]
    assert "dest 'target' is outside the flow workspace" in run.step("destlink", "u")["error"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not list((tmp_path / "work").rglob("d.zip"))


def test_member_names() -> None:
    assert member_parts("a/./b/c.txt") == ("a", "b", "c.txt")
    for bad in ("../a", "a/../../b", "/abs", "C:/x", "a\\..\\b", "nul\x00", "./"):
        with pytest.raises(UnsafeArchiveError):
            member_parts(bad)
