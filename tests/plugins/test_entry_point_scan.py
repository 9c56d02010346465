"""Finding plugin entry points without importing importlib.metadata gives exactly what
``importlib.metadata.entry_points(group="aetherflow.plugins")`` gives (same entry points, same
order, same distribution names and versions), and hands over to it where it would look
somewhere the scan does not. Checked in fresh interpreters over real metadata directories."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

GROUP = "aetherflow.plugins"

COMPARE = textwrap.dedent("""
    import json, sys
    sys.path[:0] = json.loads(sys.argv[1])
    from aetherflow import plugins
    ours = plugins._scan_entry_points()
    assert "importlib.metadata" not in sys.modules
    from importlib.metadata import entry_points
    theirs = [(e.name, e.value, e.dist.name, e.dist.version) for e in entry_points(group="aetherflow.plugins")]
    print(json.dumps({"ours": None if ours is None else [(e.name, e.value, e.dist.name, e.dist.version) for e in ours],
                      "theirs": theirs}))
""")


def _dist(site: Path, dirname: str, *, name: str | None, version: str = "1.0", eps: str | None = None,
          meta_file: str = "METADATA") -> Path:
    d = site / dirname
    d.mkdir(parents=True)
    if name is not None:
        (d / meta_file).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nName: body\n")
    if eps is not None:
        (d / "entry_points.txt").write_text(textwrap.dedent(eps))
    return d


def _compare(paths: list[Path]) -> dict[str, list[list[str]] | None]:
    out = subprocess.run([sys.executable, "-c", COMPARE, json.dumps([str(p) for p in paths])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_scan_matches_importlib_metadata(tmp_path: Path) -> None:
    site1, site2, site3 = tmp_path / "site1", tmp_path / "site2", tmp_path / "site3"
    _dist(site1, "acme_one-1.0.dist-info", name="acme-one", eps=f"""
        [console_scripts]
        acme = acme_one.cli:main

        [{GROUP}]
        # a comment
        one = acme_one
        """)
    _dist(site1, "Acme.Two-2.0.dist-info", name="Acme.Two", version="2.0", eps=f"""
        [{GROUP}]
          two_a = acme_two.steps:register
        two_b=acme_two.more
        """)
    _dist(site1, "old_pkg-0.1.egg-info", name="old-pkg", version="0.1", meta_file="PKG-INFO",
          eps=f"[{GROUP}]\nold = old_pkg\n")
    _dist(site1, "shadowed-1.0.dist-info", name="shadowed", eps=f"[{GROUP}]\nfirst = shadowed_v1\n")
    _dist(site1, "no_entry_points-1.0.dist-info", name="no-entry-points")
    _dist(site2, "shadowed-2.0.dist-info", name="shadowed", version="2.0", eps=f"[{GROUP}]\nsecond = shadowed_v2\n")
    _dist(site2, "ACME_one-9.9.dist-info", name="ACME-one", version="9.9", eps=f"[{GROUP}]\nlater = acme_one_v9\n")
    (site2 / "file_only.egg-info").write_text("Name: file-only\n")  # an old distutils install: a file
    _dist(site3, "file_only-1.0.dist-info", name="file-only", eps=f"[{GROUP}]\nhidden = file_only\n")
    _dist(site3, "no_meta-1.0.dist-info", name=None, eps=f"[{GROUP}]\nanon = no_meta\n")

    got = _compare([site1, site2, tmp_path / "missing", site3])
    assert got["ours"] is not None
    assert got["ours"] == got["theirs"]
    names = [ep[0] for ep in got["ours"]]
    assert {"one", "two_a", "two_b", "old", "first", "anon"} <= set(names)
    assert not {"second", "later", "hidden"} & set(names)  # the first distribution of a name wins
    assert ["acme-one", "1.0"] == [next(ep[2:] for ep in got["ours"] if ep[0] == "one")][0]


def test_the_installed_environment_agrees() -> None:
    """Whatever is installed where the tests run (the example plugin, in CI)."""
    got = _compare([])
    assert got["ours"] == got["theirs"]


@pytest.mark.parametrize("case", ["zip", "upper_case_suffix", "line_without_equals"])
def test_hands_over_where_it_would_differ(tmp_path: Path, case: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    paths = [site]
    if case == "zip":
        with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as zf:
            zf.writestr("zipped-1.0.dist-info/entry_points.txt", f"[{GROUP}]\nz = zipped\n")
            zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        paths.append(tmp_path / "bundle.zip")
    elif case == "upper_case_suffix":
        _dist(site, "Loud-1.0.DIST-INFO", name="Loud", eps=f"[{GROUP}]\nloud = loud\n")
    else:
        _dist(site, "broken-1.0.dist-info", name="broken", eps=f"[{GROUP}]\nno equals sign here\n")
        out = subprocess.run([sys.executable, "-c", COMPARE, json.dumps([str(site)])], capture_output=True, text=True)
        assert out.returncode != 0 and "assert" not in out.stderr  # importlib.metadata itself rejects it
        code = "import sys; sys.path.insert(0, sys.argv[1]); from aetherflow import plugins; print(plugins._scan_entry_points())"
        res = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, check=True)
        assert res.stdout.strip() == "None"
        return
    got = _compare(paths)
    assert got["ours"] is None
    if case == "zip":
        assert ["z", "zipped", "zipped", "1.0"] in got["theirs"]  # what the scan would have missed
