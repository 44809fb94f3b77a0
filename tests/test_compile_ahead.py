"""Modules compiled ahead in worker processes (editproof._compile_ahead).

The loader and the workers change the import system of the process they run in, so the
end-to-end cases run in a child Python that finds no bytecode and writes none
(``PYTHONDONTWRITEBYTECODE`` and an empty ``PYTHONPYCACHEPREFIX``), importing a generated
package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from editproof import _compile_ahead

SRC = Path(_compile_ahead.__file__).resolve().parents[1]
MODULES = 30

CHILD = """
import json, os, sys, time
sys.path[:0] = [os.environ["T_SRC"], os.environ["T_ROOT"]]
from editproof import _compile_ahead as ca
on = ca.start("t")
store = ca._store
pids = [w.pid for w in store.workers] if store else []
held = {}
if os.environ.get("T_FDS") and pids:  # what a running worker holds open
    deadline = time.time() + 10
    while time.time() < deadline:
        try:  # the worker may be closing descriptors while they are listed
            fds = os.listdir(f"/proc/{pids[0]}/fd")
            links = {fd: os.readlink(f"/proc/{pids[0]}/fd/{fd}") for fd in fds}
        except FileNotFoundError:
            continue
        if links.get("1") == os.devnull and len(links) == 4:
            held = links
            break
        time.sleep(0.005)
if os.environ.get("T_WAIT"):  # every worker done before the first import
    deadline = time.time() + 60
    while store and store.workers and store.span() is None and time.time() < deadline:
        time.sleep(0.01)
for name, text in json.loads(os.environ.get("T_EDIT", "{}")).items():
    with open(os.path.join(os.environ["T_ROOT"], "pkg", name + ".py"), "a") as f:
        f.write(text)
import importlib
names = json.loads(os.environ["T_NAMES"])
values = {n: importlib.import_module("pkg." + n).value() for n in names}
taken = [os.path.basename(p)[:-3] for p in (store.taken if store else [])
         if os.sep + "pkg" + os.sep in p and not p.endswith("__init__.py")]
summary = ca.summary()
ca.finish("t")
ended = []
if os.environ.get("T_REAP"):
    deadline = time.time() + 20
    left = set(pids)
    while left and time.time() < deadline:
        for pid in list(left):
            if os.waitpid(pid, os.WNOHANG)[0]:
                left.discard(pid)
        time.sleep(0.02)
    ended = sorted(set(pids) - left)
print(json.dumps({"on": on, "values": values, "taken": taken, "summary": summary,
                  "pids": pids, "ended": ended, "held": held}))
"""


def _package(root: Path, count: int = MODULES) -> list[str]:
    pkg = root / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    names = []
    for i in range(count):
        # Enough code per module that compiling it takes a moment.
        body = "\n".join(
            f"def f{j}(x):\n    return [x * {j} + k for k in range({i})]" for j in range(40)
        )
        (pkg / f"m{i}.py").write_text(f"{body}\n\ndef value():\n    return {i} + len(f3(1))\n")
        names.append(f"m{i}")
    return names


def _run(root: Path, cache: Path, names: list[str], **env: str) -> tuple[dict[str, Any], str]:
    full = {
        **{k: v for k, v in os.environ.items() if k != "EDITPROOF_COMPILE_AHEAD"},
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(root / "no-bytecode"),
        "EDITPROOF_CACHE": str(cache),
        "T_SRC": str(SRC),
        "T_ROOT": str(root),
        "T_NAMES": json.dumps(names),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=full, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def _list_file(cache: Path) -> Path:
    files = list((cache / "compile-ahead").glob("t-*.txt"))
    assert len(files) == 1
    return files[0]


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    if _compile_ahead._cpus() < 2:
        pytest.skip("compiling ahead needs two CPUs")


def test_the_second_run_takes_the_listed_modules_from_the_workers(
    tmp_path: Path, two_cpus: None
) -> None:
    names = _package(tmp_path)
    cache = tmp_path / "cache"
    first, _ = _run(tmp_path, cache, names)
    assert first["on"] and first["summary"]["workers"] == 0 and first["taken"] == []
    listed = _list_file(cache).read_text().splitlines()
    assert listed[0] == _compile_ahead.HEADER
    assert {str(tmp_path / "pkg" / f"{n}.py") for n in names} <= set(listed[1:])

    second, _ = _run(tmp_path, cache, names, T_WAIT="1")
    assert second["summary"]["workers"] >= 1 and "span" in second["summary"]
    assert sorted(second["taken"]) == sorted(names)
    assert second["values"] == first["values"]
    assert second["summary"]["from_workers"] >= len(names)
    assert _list_file(cache).read_text().splitlines() == listed  # unchanged: not rewritten

    fewer, _ = _run(tmp_path, cache, names[:5], T_WAIT="1")
    assert sorted(fewer["taken"]) == names[:5]
    assert _list_file(cache).read_text().splitlines() == listed  # the others are kept


def test_no_list_where_python_caches_bytecode(tmp_path: Path, two_cpus: None) -> None:
    names = _package(tmp_path, 3)
    cache = tmp_path / "cache"
    writes = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    first, _ = _run(tmp_path, cache, names, **writes)
    assert first["summary"]["compiled_here"] > 0  # compiled once, then cached by Python
    assert not (cache / "compile-ahead").exists()


def test_the_list_is_removed_once_bytecode_is_cached(tmp_path: Path, two_cpus: None) -> None:
    names = _package(tmp_path, 3)
    cache = tmp_path / "cache"
    _run(tmp_path, cache, names)
    assert _list_file(cache).exists()
    # Bytecode written: the next run will not compile these modules, the list goes.
    writes = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    _run(tmp_path, cache, names, **writes)
    assert not list((cache / "compile-ahead").glob("t-*.txt"))


def test_a_source_changed_after_its_worker_compiled_it_is_compiled_here(
    tmp_path: Path, two_cpus: None
) -> None:
    names = _package(tmp_path)
    cache = tmp_path / "cache"
    _run(tmp_path, cache, names)
    edit = {"m3": "\ndef value():\n    return -3\n"}
    second, _ = _run(tmp_path, cache, names, T_WAIT="1", T_EDIT=json.dumps(edit))
    assert second["values"]["m3"] == -3
    assert "m3" not in second["taken"] and len(second["taken"]) == len(names) - 1


def test_a_module_that_makes_the_compiler_warn_still_warns_once(
    tmp_path: Path, two_cpus: None
) -> None:
    names = _package(tmp_path, 3)
    (tmp_path / "pkg" / "warns.py").write_text("x = 1\ny = x is 1\n\ndef value():\n    return 9\n")
    names.append("warns")
    cache = tmp_path / "cache"
    _, before = _run(tmp_path, cache, names, EDITPROOF_COMPILE_AHEAD="0")
    _run(tmp_path, cache, names)
    second, after = _run(tmp_path, cache, names, T_WAIT="1")
    assert "warns" not in second["taken"] and second["values"]["warns"] == 9
    assert before.count("SyntaxWarning") == after.count("SyntaxWarning") == 1


def test_a_hostile_list_costs_nothing(tmp_path: Path, two_cpus: None) -> None:
    """A FIFO, a device behind a symlink, a directory, a huge file, relative and non-.py
    paths: skipped, and the run neither hangs nor differs."""
    names = _package(tmp_path, 2)
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "fifo.py")
    (odd / "zero.py").symlink_to("/dev/zero")
    (odd / "dir.py").mkdir()
    (odd / "huge.py").write_text("x = 1\n" * (_compile_ahead.MAX_SOURCE_BYTES // 6 + 1))
    cache = tmp_path / "cache"
    first, _ = _run(tmp_path, cache, names)
    path = _list_file(cache)
    good = [str(tmp_path / "pkg" / f"{n}.py") for n in names]
    hostile = [str(odd / n) for n in ("fifo.py", "zero.py", "dir.py", "huge.py")]
    path.write_text(
        "\n".join([_compile_ahead.HEADER, *hostile, "rel/x.py", "/dev/zero", *good]) + "\n"
    )
    second, _ = _run(tmp_path, cache, names, T_WAIT="1")
    assert "span" in second["summary"]  # every worker ended
    assert sorted(second["taken"]) == sorted(names)
    assert second["values"] == first["values"]


def test_workers_end_when_the_importer_stops_listening(tmp_path: Path, two_cpus: None) -> None:
    names = _package(tmp_path, 200)
    cache = tmp_path / "cache"
    _run(tmp_path, cache, names)
    # Stop at once: the workers are still compiling and must end on their next word.
    second, _ = _run(tmp_path, cache, names[:1], T_REAP="1")
    assert second["pids"] and second["ended"] == sorted(second["pids"])


def test_a_worker_holds_none_of_the_importers_pipes(tmp_path: Path, two_cpus: None) -> None:
    """A caller reading the command's stdout to its end must not wait for a worker."""
    names = _package(tmp_path, 200)
    cache = tmp_path / "cache"
    _run(tmp_path, cache, names)
    second, _ = _run(tmp_path, cache, names[:1], T_FDS="1")
    held = second["held"]
    assert held, "no worker seen running"
    assert held["0"] == held["1"] == held["2"] == os.devnull
    assert len(held) == 4 and sum(v.startswith("pipe:") for v in held.values()) == 1


def test_off_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compile_ahead, "_cpus", lambda: 4)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.delenv("EDITPROOF_COMPILE_AHEAD", raising=False)
    assert _compile_ahead.enabled()
    monkeypatch.setenv("EDITPROOF_COMPILE_AHEAD", "0")
    assert not _compile_ahead.enabled()
    monkeypatch.delenv("EDITPROOF_COMPILE_AHEAD")
    monkeypatch.setattr(_compile_ahead, "_cpus", lambda: 1)
    assert not _compile_ahead.enabled()
    monkeypatch.setattr(_compile_ahead, "_cpus", lambda: 4)
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # forking beside a thread
    assert not _compile_ahead.enabled()
    assert not _compile_ahead.start("evaluate")


def test_the_list_keeps_absolute_python_paths_once(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    lines = [_compile_ahead.HEADER, "/a/x.py", "rel/y.py", "/a/z.so", "/a/x.py", "", "/b/w.py"]
    path.write_text("\n".join(lines) + "\n")
    assert _compile_ahead.read_list(str(path)) == ["/a/x.py", "/b/w.py"]
    path.write_text("another format 1\n/a/x.py\n")
    assert _compile_ahead.read_list(str(path)) == []
    path.write_bytes(b"\xff\xfe")
    assert _compile_ahead.read_list(str(tmp_path / "missing")) == []
    assert _compile_ahead.read_list(str(path)) == []


def test_writing_the_list(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "l.txt"
    _compile_ahead.write_list(str(path), ["/a/x.py", "/a/bad\nname.py", "/b/y.py"])
    assert _compile_ahead.read_list(str(path)) == ["/a/x.py", "/b/y.py"]
    assert [p.name for p in path.parent.iterdir()] == ["l.txt"]  # no temporary left
    _compile_ahead.write_list(str(path), [])
    assert not path.exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    _compile_ahead.write_list(str(blocked / "l.txt"), ["/a/x.py"])  # cannot: skipped


def test_the_list_lives_in_the_cache_per_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path))
    a, b = _compile_ahead.list_path("evaluate"), _compile_ahead.list_path("tune")
    assert Path(a).parent == tmp_path / "compile-ahead" and a != b
    monkeypatch.setattr(sys, "executable", "/another/python")
    assert _compile_ahead.list_path("evaluate") != a


def test_code_that_does_not_read_is_compiled_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's frame that does not unmarshal (or any fault in taking it) falls back to
    compiling the source: the import never fails because of the workers."""
    import mmap

    source = b"value = 41 + 1\n"
    region = mmap.mmap(-1, 4096)
    region[:20] = _compile_ahead.digest(source) + b"\xff\xff\xff\xff"  # digest, then junk
    store = _compile_ahead.Store()
    store.index["/x/m.py"] = (_compile_ahead.Worker(0, -1, region), 0, 16, 4)
    monkeypatch.setattr(_compile_ahead, "_store", store)
    loader = _compile_ahead.AheadLoader("m", "/x/m.py")
    namespace: dict[str, Any] = {}
    exec(loader.source_to_code(source, "/x/m.py"), namespace)
    assert namespace["value"] == 42 and store.taken == []


def test_no_room_for_workers_leaves_the_import_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """start() never raises: without memory for a region it runs with the workers it made
    (none), and the loader compiles every module here."""
    import mmap

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(_compile_ahead, "enabled", lambda: True)
    monkeypatch.setattr(_compile_ahead, "read_list", lambda path: ["/x/a.py"])
    monkeypatch.setattr(_compile_ahead, "_cpus", lambda: 4)
    monkeypatch.setattr(mmap, "mmap", no_memory)
    hooks: list[str] = []
    monkeypatch.setattr(_compile_ahead, "_install_hook", lambda: hooks.append("hook"))
    monkeypatch.setattr(_compile_ahead, "_store", None)
    assert _compile_ahead.start("t") and hooks == ["hook"]
    store = _compile_ahead._store
    assert store is not None and store.workers == []
    monkeypatch.setattr(_compile_ahead, "write_list", lambda path, paths: None)
    _compile_ahead.finish("t")
