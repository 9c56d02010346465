"""The entry point cache (``$AETHERFLOW_HOME/cache/entry-points.json``): a repeated load with the
same interpreter and ``sys.path`` skips ``importlib.metadata`` (not even imported) and finds the same plugins; a
distribution installed, removed or rewritten in place is seen on the next load; a corrupt,
unreadable or foreign cache file is a miss, never an error; ``AETHERFLOW_PLUGIN_CACHE=0`` turns it
off. docs/plugins.md "The entry point cache".

Every load runs in a fresh subprocess through the pipeline's registry loading, with fake
distributions (``*.dist-info`` / ``*.egg-info`` directories) in a directory on ``PYTHONPATH``.
A load right after a ``sys.path`` directory changed does not write the cache (its mtime is too
recent to trust), so the directories made here are backdated, and a load that must be a hit is
retried (``hit()``) in case something else touches a ``sys.path`` directory meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support import example_installed

# "scanned": the installed distributions were looked up with importlib.metadata (a miss), counted
# at the lookup itself (plugins._entry_points)
COUNT_SCANS = """
from aetherflow import plugins
scans = []
_scan = plugins._entry_points
plugins._entry_points = lambda: (scans.append(1), _scan())[1]
"""

PROBE = COUNT_SCANS + textwrap.dedent("""
    import json, os, sys
    from aetherflow.prepare import load_plugins as load_registry
    from aetherflow.settings import settings_from_env

    loaded = load_registry(settings_from_env(dict(os.environ)))
    print(json.dumps({
        "scanned": bool(scans),
        "metadata_imported": "importlib.metadata" in sys.modules,
        "plugins": {p.name: [p.distribution, p.version, list(p.steps), p.error]
                    for p in loaded.plugins if p.source == "entry point"},
    }))
""")

PLUGIN_MODULE = """
from aetherflow.api import STEP_SUCCESS, Step, StepResult, register_step


@register_step("{name}.ping")
class Ping(Step):
    def run(self, ctx, inputs):
        return StepResult(STEP_SUCCESS, {{}})
"""


pytestmark = pytest.mark.skipif(
    not example_installed(), reason="needs the example plugin installed: pip install ./plugins/aetherflow-example"
)


def cache_file(home: Path) -> Path:
    return home / "cache" / "entry-points.json"


def backdate(*paths: Path, age: float = 60.0) -> None:
    """Set mtimes in the past, as if the change happened a while ago (see the module docstring)."""
    t = time.time_ns() - int(age * 1e9)
    for p in paths:
        os.utime(p, ns=(t, t))


def probe(site: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    e = dict(os.environ)
    if site is not None:
        e["PYTHONPATH"] = str(site)
    e.update(env or {})
    # -P: no working directory on sys.path, so the key holds only directories this test controls
    # (plus the interpreter's own)
    proc = subprocess.run([sys.executable, "-P", "-c", PROBE], capture_output=True, text=True, env=e, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def hit(site: Path | None = None, tries: int = 20) -> dict[str, Any]:
    """Load until a load is a cache hit (one after another with nothing changed in between);
    every load must agree with the last one."""
    seen = []
    for _ in range(tries):
        res = probe(site)
        seen.append(res["plugins"])
        if not res["scanned"]:
            assert all(s == res["plugins"] for s in seen), seen
            return res
    raise AssertionError(f"no cache hit in {tries} loads")


def add_dist(site: Path, name: str, version: str = "1.0", *, egg_info: bool = False) -> Path:
    """A distribution ``name`` whose entry point ``name`` names its package ``<name>_plugin``,
    which registers the step type ``<name>.ping``."""
    pkg = site / f"{name}_plugin"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE.format(name=name)), encoding="utf-8")
    meta = site / (f"{name}.egg-info" if egg_info else f"{name}-{version}.dist-info")
    meta.mkdir()
    (meta / ("PKG-INFO" if egg_info else "METADATA")).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (meta / "entry_points.txt").write_text(f"[aetherflow.plugins]\n{name} = {name}_plugin\n", encoding="utf-8")
    backdate(pkg, pkg / "__init__.py", *meta.iterdir(), meta)
    return meta


@pytest.fixture
def site(tmp_path: Path) -> Path:
    d = tmp_path / "site"
    d.mkdir()
    return d


def test_second_load_skips_the_lookup_and_finds_the_same_plugins(home: Path) -> None:
    first = probe()
    assert first["scanned"] is True  # nothing cached yet: looked up
    assert first["plugins"]["example"][:3] == ["aetherflow-example", "0.1.0", first["plugins"]["example"][2]]
    assert "example.greet" in first["plugins"]["example"][2] and first["plugins"]["example"][3] is None
    second = hit()
    assert second["plugins"] == first["plugins"]
    assert first["metadata_imported"] is True and second["metadata_imported"] is False
    f = cache_file(home)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    for d in (home, home / "cache"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    doc = json.loads(f.read_text(encoding="utf-8"))
    assert {"name": "example", "value": "aetherflow_example", "module": "aetherflow_example", "attr": None,
            "dist": "aetherflow-example", "version": "0.1.0"} in doc["entry_points"]
    from aetherflow import __version__

    assert doc["key"]["aetherflow"] == __version__ and doc["key"]["python"][0] == sys.executable
    assert all(len(e) == 3 and len(e[2]) in (1, 4) for e in doc["key"]["sys_path"])
    assert not list((home / "cache").glob(".entry-points.*"))  # no temporary file left behind


def test_installed_distribution_is_found_and_removed_one_disappears(home: Path, site: Path) -> None:
    add_dist(site, "foo")
    backdate(site)
    res = hit(site)
    assert res["plugins"]["foo"] == ["foo", "1.0", ["foo.ping"], None]
    assert "bar" not in res["plugins"] and "example" in res["plugins"]

    bar = add_dist(site, "bar", "2.0")  # "installed": site's mtime is now new
    res = probe(site)
    assert res["scanned"] is True
    assert res["plugins"]["bar"] == ["bar", "2.0", ["bar.ping"], None]
    assert res["plugins"]["foo"] == ["foo", "1.0", ["foo.ping"], None]

    backdate(site, age=30)  # a while later: a different, settled mtime; cached again
    res = hit(site)
    assert set(res["plugins"]) >= {"foo", "bar", "example"}

    shutil.rmtree(bar)  # "uninstalled"
    res = probe(site)
    assert res["scanned"] is True and "bar" not in res["plugins"] and "foo" in res["plugins"]
    backdate(site, age=20)
    res = hit(site)
    assert "bar" not in res["plugins"] and "foo" in res["plugins"]


def test_upgraded_distribution_reports_its_new_version(home: Path, site: Path) -> None:
    old = add_dist(site, "foo", "1.0")
    backdate(site)
    assert hit(site)["plugins"]["foo"][1] == "1.0"
    shutil.rmtree(old)  # what an installer does: remove the old dist-info, create the new one
    add_dist(site, "foo", "1.1")
    res = probe(site)
    assert res["scanned"] is True and res["plugins"]["foo"][1] == "1.1"


def test_egg_info_rewritten_in_place_is_seen(home: Path, site: Path) -> None:
    # `setup.py develop` rewrites an egg-info's files in place: no directory's mtime changes
    egg = add_dist(site, "baz", egg_info=True)
    pkg = site / "qux_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE.format(name="qux")), encoding="utf-8")
    backdate(pkg / "__init__.py", pkg, site)
    res = hit(site)
    assert res["plugins"]["baz"] == ["baz", "1.0", ["baz.ping"], None] and "qux" not in res["plugins"]
    with open(egg / "entry_points.txt", "a", encoding="utf-8") as f:
        f.write("qux = qux_plugin\n")
    res = probe(site)
    assert res["scanned"] is True
    assert res["plugins"]["qux"] == ["baz", "1.0", ["qux.ping"], None]
    backdate(egg / "entry_points.txt")
    assert "qux" in hit(site)["plugins"]
    with open(egg / "PKG-INFO", "w", encoding="utf-8") as f:  # a version bump, in place
        f.write("Metadata-Version: 2.1\nName: baz\nVersion: 1.1\n")
    res = probe(site)
    assert res["scanned"] is True
    assert res["plugins"]["baz"][1] == "1.1" and res["plugins"]["qux"][1] == "1.1"


def test_broken_cached_entry_point_reports_the_same_error(home: Path, site: Path) -> None:
    meta = site / "ghost-1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost\nVersion: 1.0\n", encoding="utf-8")
    (meta / "entry_points.txt").write_text(
        "[aetherflow.plugins]\nghost = aetherflow_no_such_ghost_module\nhalf = json:no_such_attr\n", encoding="utf-8")
    backdate(meta / "METADATA", meta / "entry_points.txt", meta, site)
    scanned = probe(site)
    cached = hit(site)
    assert cached["plugins"]["ghost"] == scanned["plugins"]["ghost"] == [
        "ghost", "1.0", [], "ModuleNotFoundError: No module named 'aetherflow_no_such_ghost_module'"]
    assert cached["plugins"]["half"] == scanned["plugins"]["half"]
    assert cached["plugins"]["half"][3] == "AttributeError: module 'json' has no attribute 'no_such_attr'"


def test_corrupt_cache_file_falls_back_to_a_lookup(home: Path) -> None:
    good = hit()
    f = cache_file(home)
    for junk in (b"", b"{not json", b"\xff\xfe", b'{"key": 1}', b"[]", json.dumps({
            **json.loads(f.read_text(encoding="utf-8")), "entry_points": [{"name": 3}]}).encode()):
        f.write_bytes(junk)
        os.chmod(f, 0o600)
        res = probe()
        assert res["scanned"] is True, junk
        assert res["plugins"] == good["plugins"], junk
    assert hit()["plugins"] == good["plugins"]  # rewritten with a good one


def test_unreadable_cache_file_falls_back_to_a_lookup(home: Path) -> None:
    good = probe()
    f = cache_file(home)
    f.unlink(missing_ok=True)
    f.mkdir(parents=True)  # neither readable nor replaceable (a chmod would not stop root)
    for _ in range(2):
        res = probe()
        assert res["scanned"] is True and res["plugins"] == good["plugins"]
    assert f.is_dir() and list(f.iterdir()) == []
    assert not list(f.parent.glob(".entry-points.*"))


def test_cache_file_writable_by_others_is_not_trusted(home: Path) -> None:
    hit()
    f = cache_file(home)
    doc = json.loads(f.read_text(encoding="utf-8"))
    doc["entry_points"].append({"name": "planted", "value": "aetherflow_planted_xyz", "module": "aetherflow_planted_xyz",
                                "attr": None, "dist": None, "version": None})
    f.write_text(json.dumps(doc), encoding="utf-8")
    os.chmod(f, 0o620)
    res = probe()
    assert res["scanned"] is True and "planted" not in res["plugins"]
    f.write_text(json.dumps(doc), encoding="utf-8")  # the same file, ours alone: it is used
    os.chmod(f, 0o600)
    res = probe()
    if not res["scanned"]:  # (unless something changed a sys.path directory meanwhile)
        assert res["plugins"]["planted"][3] == "ModuleNotFoundError: No module named 'aetherflow_planted_xyz'"


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_switched_off_writes_and_reads_no_cache(home: Path, value: str) -> None:
    for _ in range(2):
        res = probe(env={"AETHERFLOW_PLUGIN_CACHE": value})
        assert res["scanned"] is True and "example" in res["plugins"]
    assert not cache_file(home).exists()
    hit()  # on again
    res = probe(env={"AETHERFLOW_PLUGIN_CACHE": value})
    assert res["scanned"] is True


def test_run_and_steps_list_use_the_cache(home: Path, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("version: 1\nflow: {id: greet}\njobs:\n  - id: a\n    steps:\n"
                    "      - {id: g, type: example.greet, inputs: {name: cache}}\n", encoding="utf-8")
    # the command as the CLI runs it, with the scans counted (printed to stderr at exit)
    cli = COUNT_SCANS + textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: sys.stderr.write(f"scans={len(scans)}\\n"))
        from aetherflow.cli import main
        sys.argv = ["aetherflow", *sys.argv[1:]]
        main()
    """)

    for args in (("run", str(flow), "--json"), ("steps", "list", "--json")):
        for _ in range(20):
            proc = subprocess.run([sys.executable, "-P", "-c", cli, *args], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert "example.greet" in proc.stdout or json.loads(proc.stdout)["status"] == "SUCCESS"
            assert proc.stderr.endswith(("scans=0\n", "scans=1\n")), proc.stderr[-2000:]
            if proc.stderr.endswith("scans=0\n"):
                break
        else:
            raise AssertionError(f"{args}: the installed distributions were looked up on every one of 20 runs")


def test_recently_changed_directory_is_not_remembered(home: Path, site: Path) -> None:
    # on a filesystem with coarse timestamps a further change could keep a fresh mtime as it is
    add_dist(site, "foo")
    res = probe(site)  # site was changed just now
    assert "foo" in res["plugins"] and not cache_file(home).exists()
    backdate(site)
    assert "foo" in hit(site)["plugins"]
