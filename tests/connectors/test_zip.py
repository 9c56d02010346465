"""zip / unzip through real runs: a round trip, and zip-slip / symlink escapes refused."""

from __future__ import annotations

import hashlib
import stat
import struct
import zipfile
import zlib
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


def _zipcrypto(path: Path, name: str, data: bytes, password: bytes) -> Path:
    """A one-member stored zip with traditional PKWARE (ZipCrypto) encryption: the stdlib reads
    these but cannot write them. Fixed header bytes keep the test deterministic."""
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(ch: int) -> None:
        keys[0] = (keys[0] >> 8) ^ table[(keys[0] ^ ch) & 0xFF]
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = (keys[2] >> 8) ^ table[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

    for ch in password:
        update(ch)
    crc = zlib.crc32(data)
    body = bytearray()
    for ch in bytes(11) + bytes([crc >> 24]) + data:  # 12-byte header, last byte checks the password
        k = keys[2] | 2
        body.append(ch ^ (((k * (k ^ 1)) >> 8) & 0xFF))
        update(ch)
    fname = name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 1, 0, 0, 0x21, crc, len(body), len(data), len(fname), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 1, 0, 0, 0x21, crc, len(body), len(data),
                          len(fname), 0, 0, 0, 0, 0o644 << 16, 0)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(fname), len(local) + len(fname) + len(body), 0)
    path.write_bytes(local + fname + bytes(body) + central + fname + eocd)
    return path


def test_aetherflow_core_inputs(cli, write_flow, run_flow, tmp_path: Path) -> None:
    """A flow written for aetherflow-core: zip with dest_path/items/src_dir/recursive/overwrite,
    unzip with archives/dest_dir/src_dir/members/private_zip_folder/password."""
    secret = _zipcrypto(tmp_path / "secret.zip", "inner/msg.txt", b"top secret text", b"open-sesame")
    evil = _evil(tmp_path / "evil.zip", "dotdot")
    with zipfile.ZipFile(secret) as zf:  # the helper really wrote a ZipCrypto archive
        assert zf.read("inner/msg.txt", pwd=b"open-sesame") == b"top secret text"
    text = HEAD + job(
        "pack",
        sh("make", "mkdir -p artifacts/exports/sub artifacts/out artifacts/bundles/old && printf 1 > artifacts/exports/a.csv "
                   "&& printf 2 > artifacts/exports/b.csv && printf 3 > artifacts/exports/sub/c.csv "
                   "&& printf n > artifacts/exports/notes.txt && printf r > artifacts/out/report.xlsx "
                   "&& mkdir -p artifacts/extracted && printf stale > artifacts/extracted/keep.txt"),
        sh("fetch", f"cp '{secret}' artifacts/bundles/old/secret.zip"),
        """      - id: pack_bundle
        type: zip
        inputs:
          dest_path: bundles/run.zip
          src_dir: .
          items: ["exports/*.csv", {path: out/report.xlsx}, {glob: "nothing/*.txt"}]
          overwrite: true
      - id: whole_dir
        type: zip
        inputs: {dest_path: bundles/dir.zip, src_dir: exports, items: [exports], recursive: true, connector: arch}
      - id: dir_not_recursive
        type: zip
        inputs: {dest_path: bundles/none.zip, items: [exports], recursive: false}
      - id: extract_bundle
        type: unzip
        inputs:
          archives: [bundles/run.zip, bundles/dir.zip, bundles/missing.zip]
          dest_dir: extracted
          overwrite: true
      - id: private
        type: unzip
        inputs: {archives: bundles/run.zip, dest_dir: extracted, private_zip_folder: true, members: [exports/a.csv]}
      - id: keep_existing
        type: unzip
        inputs: {archives: [bundles/run.zip], dest_dir: extracted, overwrite: false}
      - id: open_secret
        type: unzip
        inputs: {archives: [bundles/old/secret.zip], src_dir: bundles, dest_dir: opened, password: open-sesame}
      - id: open_ours
        type: unzip
        inputs: {archive: bundles/old/secret.zip, dest: mine, password: open-sesame, members: [inner/msg.txt]}
""",
    ) + job(
        "encrypted_zip",
        sh("make", "printf x > artifacts/x.txt"),
        """      - id: z
        type: zip
        inputs: {dest_path: x.zip, items: [x.txt], password: zip-pw-4711}
""",
    ) + job(
        "no_overwrite",
        sh("make", "printf x > artifacts/x.txt && printf old > artifacts/x.zip"),
        """      - id: z
        type: zip
        inputs: {dest_path: x.zip, items: [x.txt], overwrite: false}
""",
    ) + job(
        "no_password",
        sh("fetch", f"cp '{secret}' artifacts/secret.zip"),
        """      - id: u
        type: unzip
        inputs: {archives: secret.zip, dest_dir: out}
""",
    ) + job(
        "wrong_password",
        sh("fetch", f"cp '{secret}' artifacts/secret.zip"),
        """      - id: u
        type: unzip
        inputs: {archive: secret.zip, password: not-it}
""",
    )
    text += job(
        "slip",
        sh("fetch", f"cp '{evil}' artifacts/evil.zip && printf x > artifacts/x.txt"),
        """      - id: z
        type: zip
        inputs: {dest_path: good.zip, items: [x.txt]}
      - id: u
        type: unzip
        inputs: {archives: [good.zip, evil.zip], dest_dir: out}
""",
    )
    text = text.replace("jobs:\n", "resources:\n  arch: {kind: archive, driver: zipfile}\njobs:\n", 1)
    flow = write_flow(text)
    res = cli("validate", str(flow))
    assert res.exit_code == 0, res.stderr
    run = run_flow(flow)
    assert run.result.exit_code == 1  # the five failure jobs
    for j, s in (("encrypted_zip", "z"), ("no_overwrite", "z"), ("no_password", "u"), ("wrong_password", "u"),
                 ("slip", "u")):
        assert run.step(j, s)["status"] == "FAILED"

    z = run.step("pack", "pack_bundle")["outputs"]
    bundle = Path(z["path"])
    assert z["output"] == z["path"] and z["count"] == z["files"] == 3 and z["password"] is False
    assert z["src_dir"] == str(bundle.parent.parent) and z["missing"] == ["nothing/*.txt"]
    with zipfile.ZipFile(bundle) as zf:  # names relative to src_dir; notes.txt does not match *.csv
        assert sorted(zf.namelist()) == ["exports/a.csv", "exports/b.csv", "out/report.xlsx"]
    with zipfile.ZipFile(run.step("pack", "whole_dir")["outputs"]["path"]) as zf:
        assert sorted(zf.namelist()) == ["a.csv", "b.csv", "notes.txt", "sub/c.csv"]
    none = run.step("pack", "dir_not_recursive")
    assert none["status"] == "SKIPPED" and none["outputs"]["count"] == 0

    u = run.step("pack", "extract_bundle")["outputs"]
    dest = Path(u["dest_dir"])
    # archives at artifacts/bundles/*.zip land in dest_dir/bundles/ (their directory below src_dir)
    assert [Path(x["dest_dir"]) for x in u["unzipped"]] == [dest / "bundles", dest / "bundles"]
    assert u["unzipped"][0]["files"] == ["exports/a.csv", "exports/b.csv", "out/report.xlsx"]
    assert u["missing"] == ["bundles/missing.zip"]  # skipped, as the reference does
    assert (dest / "bundles" / "exports" / "a.csv").read_text() == "1"
    assert (dest / "bundles" / "sub" / "c.csv").read_text() == "3"
    assert (dest / "keep.txt").read_text() == "stale"  # merged into, not replaced
    p = run.step("pack", "private")["outputs"]
    assert p["names"] == ["bundles/run/exports/a.csv"] and (dest / "bundles" / "run" / "exports" / "a.csv").is_file()
    assert run.step("pack", "keep_existing")["outputs"]["files"] == 0  # everything was there already
    o = run.step("pack", "open_secret")["outputs"]
    assert o["unzipped"][0]["password"] is True and o["names"] == ["old/inner/msg.txt"]
    assert (Path(o["dest_dir"]) / "old" / "inner" / "msg.txt").read_text() == "top secret text"
    m = run.step("pack", "open_ours")["outputs"]
    assert (Path(m["dest"]) / "inner" / "msg.txt").read_bytes() == b"top secret text"

    err = run.step("encrypted_zip", "z")["error"]
    assert "cannot create encrypted zip files" in err and "zip-pw-4711" not in err
    enc = tmp_path / "work" / "files" / "encrypted_zip"
    assert enc.is_dir() and not list(enc.rglob("*.zip"))  # nothing was written unencrypted
    assert "x.zip' already exists and overwrite is false" in run.step("no_overwrite", "z")["error"]
    assert "archive 'secret.zip' is encrypted: set password" in run.step("no_password", "u")["error"]
    assert "archive 'secret.zip': the password is wrong" in run.step("wrong_password", "u")["error"]
    for text in (run.result.stdout, run.result.stderr):
        assert "zip-pw-4711" not in text
    assert "archive 'evil.zip' refused, nothing extracted" in run.step("slip", "u")["error"]
    slip = tmp_path / "work" / "files" / "slip" / run.run_id / "artifacts" / "out"
    assert slip.is_dir() and not list(slip.iterdir())  # good.zip was not merged either
