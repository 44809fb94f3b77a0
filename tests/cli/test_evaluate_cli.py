from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytest.importorskip("torch")

SMALL = ("--seq-len", "32", "--windows", "10", "--device", "cpu", "--relax-token-floor")


def _one_line_error(r: Result, code: int, text: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    lines = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], r.err
    assert "Traceback" not in r.err + r.out


def test_version(cli: Callable[..., Result]) -> None:
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("editproof ")


def test_evaluate_writes_report_and_html(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    assert r.out.startswith("PASS")
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["format"] == "editproof.evaluation-report" and report["schema_version"] == 1
    assert report["primary_metric"]["ratio"] == 1.0
    assert (out / "evaluation.html").read_text().lstrip().lower().startswith("<!doctype html>")
    assert (
        report["provenance"]["command"][:2] == ["editproof", "evaluate"]
        or report["provenance"]["command"]
    )


def test_existing_report_is_not_overwritten(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "evaluation.report.json").write_text("precious")
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        *SMALL,
    )
    _one_line_error(r, 5, "already exists")
    assert (out / "evaluation.report.json").read_text() == "precious"


def test_failing_gates_exit_1(
    cli: Callable[..., Result], tiny_dir: Path, tiny_dir_other: Path, tmp_path: Path
) -> None:
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir_other),
        "--out",
        str(tmp_path / "o"),
        "--strict-token-floor",
        "--seq-len",
        "32",
        "--windows",
        "10",
        "--device",
        "cpu",
    )
    assert r.code == 1 and r.out.startswith("FAIL")
    assert (tmp_path / "o" / "evaluation.report.json").is_file()


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        (("--tier", "lenient"), 2, "unknown tier"),
        (("--provider", "web"), 2, "provider"),
        (("--windows", "ten"), 2, "--windows"),
        (("--net", "5"), 2, "--net"),
        (("--bogus-flag",), 2, "bogus"),
        (("--windows", "50000"), 4, "windows"),
        (("--provider", "text", "--data", "/no/such/file.txt"), 3, "/no/such/file.txt"),
    ],
)
def test_bad_input_is_one_line(
    cli: Callable[..., Result],
    tiny_dir: Path,
    tmp_path: Path,
    extra: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    args = [
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(tmp_path / "o"),
        "--seq-len",
        "32",
        "--device",
        "cpu",
    ]
    _one_line_error(cli(*args, *extra), code, text)


def test_missing_and_invalid_models(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    base = ["evaluate", "--out", str(tmp_path / "o"), *SMALL]
    _one_line_error(
        cli(*base, "--baseline", str(tiny_dir), "--subject", "./nowhere"), 3, "does not exist"
    )
    _one_line_error(
        cli(*base, "--baseline", str(tmp_path), "--subject", str(tiny_dir)), 3, "config.json"
    )


def test_unwritable_output(cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(blocker),
        *SMALL,
    )
    _one_line_error(r, 5, "not a directory")


def test_failed_run_leaves_no_empty_output_dir(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        "--seq-len",
        "32",
        "--windows",
        "50000",
        "--device",
        "cpu",
    )
    assert r.code == 4 and not out.exists()


def test_same_model_spelled_differently_is_noop(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_dir.parent)
    out = tmp_path / "o"
    r = cli(
        "evaluate",
        "--baseline",
        tiny_dir.name,
        "--subject",
        f"./{tiny_dir.name}",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["edit"]["label"] == "noop" and report["primary_metric"]["ratio"] == 1.0


# --- bad input fails before anything is measured (docs/cli.md, exit codes) -----------------


@pytest.fixture
def no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("measure_nll was called")

    monkeypatch.setattr("editproof.evaluation.measure_nll", boom)


def _only_error(r: Result, code: int, *needles: str) -> str:
    """Exit ``code`` and, with -q, nothing on stderr but one ``error:`` line naming the problem."""
    assert r.code == code, (r.code, r.out, r.err)
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert all(n in lines[0] for n in needles), lines[0]
    assert r.out == "" and "Traceback" not in r.err
    return lines[0]


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _run(cli: Callable[..., Result], base: Path, out: Path, *how: str) -> Result:
    return cli("evaluate", "--baseline", str(base), *how, "--out", str(out), "-q", *SMALL)


def test_subject_without_weights_fails_first(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, no_measuring: None
) -> None:
    subject = tmp_path / "no-weights"
    subject.mkdir()
    (subject / "config.json").write_text((tiny_dir / "config.json").read_text())
    r = _run(cli, tiny_dir, tmp_path / "o", "--subject", str(subject))
    _only_error(r, 3, f"no weights in '{subject}'", "model.safetensors")
    assert not (tmp_path / "o").exists()


def _truncate(d: Path) -> None:
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])


def _bad_header(d: Path) -> None:
    w = d / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:8] + b"#" + data[9:])


def _offsets_past_end(d: Path) -> None:
    """A header that claims more data than the file holds (same header length)."""
    import json as _json
    import struct

    w = d / "model.safetensors"
    data = w.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = _json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, end + 10**9]
    raw = _json.dumps(header).encode()
    w.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def _index_missing_shard(d: Path) -> None:
    import json as _json
    import struct

    w = d / "model.safetensors"
    data = w.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    names = [k for k in _json.loads(data[8 : 8 + n]) if k != "__metadata__"]
    w.rename(d / "model-00001-of-00002.safetensors")
    weight_map = {k: "model-00001-of-00002.safetensors" for k in names}
    weight_map[names[-1]] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(_json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize(
    ("damage", "code", "needle"),
    [
        (_truncate, 4, "data_offsets"),
        (_bad_header, 4, "header is not valid JSON"),
        (_offsets_past_end, 4, "run past the end of the file"),
        (
            _index_missing_shard,
            3,
            "lists shard model-00002-of-00002.safetensors, which does not exist",
        ),
    ],
)
def test_corrupt_subject_fails_first(
    cli: Callable[..., Result],
    tiny_dir: Path,
    tmp_path: Path,
    no_measuring: None,
    damage: Callable[[Path], None],
    code: int,
    needle: str,
) -> None:
    subject = _copy(tiny_dir, tmp_path / "subject")
    damage(subject)
    r = _run(cli, tiny_dir, tmp_path / "o", "--subject", str(subject))
    line = _only_error(r, code, needle)
    assert str(subject) in line
    if code == 4:
        assert line.startswith(f"error: corrupt safetensors file {subject / 'model.safetensors'}: ")
    assert not (tmp_path / "o").exists()


def test_corrupt_baseline_is_exit_4_not_70(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, no_measuring: None
) -> None:
    base = _copy(tiny_dir, tmp_path / "base")
    _truncate(base)
    r = _run(cli, base, tmp_path / "o", "--edit", "noop")
    _only_error(r, 4, "corrupt safetensors file", str(base / "model.safetensors"))
    assert not (tmp_path / "o").exists()


def test_scope_matching_nothing_fails_before_the_baseline_is_measured(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, no_measuring: None
) -> None:
    r = _run(cli, tiny_dir, tmp_path / "o", "--edit", "quant_rtn:4:32:ffn@layer=999")
    line = _only_error(r, 2, "quant_rtn:4:32:ffn@layer=999", "matches no ffn weights")
    assert line.endswith("LlamaForCausalLM has 2 decoder layers (0-1) with attn and ffn weights")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("seq_len", ["0", "1", "-3"])
def test_seq_len_below_two_is_a_usage_error(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, no_measuring: None, seq_len: str
) -> None:
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "noop",
        "--out",
        str(tmp_path / "o"),
        "-q",
        "--seq-len",
        seq_len,
        "--windows",
        "10",
        "--device",
        "cpu",
    )
    _only_error(
        r, 2, f"--seq-len must be at least 2 (one input and one target token), got {seq_len}"
    )
    assert not (tmp_path / "o").exists()


# --- progress --------------------------------------------------------------------------------


def test_progress_off_a_terminal_is_one_line_per_phase_start_and_end(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "noop",
        "--out",
        str(tmp_path / "o"),
        "--seq-len",
        "32",
        "--windows",
        "5",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--relax-token-floor",
        "--no-guards",
    )
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert all(line.startswith("· ") for line in lines), r.err
    windows = [line for line in lines if "windows" in line and not line.startswith("· windows:")]
    assert len(windows) == 4, r.err  # 4 batches per phase, but no line per batch
    assert windows[0] == "· baseline: measuring 10 windows"
    assert windows[1].startswith("· baseline: 10 windows in ") and windows[1].endswith(" windows/s")
    assert windows[2] == "· subject: measuring 10 windows"
    assert windows[3].startswith("· subject: 10 windows in ")
    assert "· windows: 5 preview + 5 final, 32 tokens each" in lines
    assert r.out.startswith("PASS") and "·" not in r.out  # stdout: the verdict only


def test_quiet_prints_no_progress(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    r = _run(cli, tiny_dir, tmp_path / "o", "--edit", "noop", "--no-guards")
    assert r.code == 0 and r.err == "" and r.out.startswith("PASS") and len(r.out.splitlines()) == 1


def test_every_second_of_evaluate_is_named(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    """timings.json: startup, checks, imports, every evaluation key, writing; the keys add
    up to the process's time and the evaluation's unnamed rest is small."""
    out = tmp_path / "run"
    r = cli("evaluate", "--baseline", str(tiny_dir), "--edit", "quant_rtn:4:32:ffn",
            "--out", str(out), *SMALL)  # fmt: skip
    assert r.code in (0, 1), r.err
    t = json.loads((out / "timings.json").read_text())
    assert t["format"] == "editproof.process-timings" and t["process_start_measured"] is True
    keys = t["keys"]
    for key in ("startup", "checks", "imports_torch", "imports_transformers", "text", "load_baseline",
                "check_edits", "fingerprints", "measure_baseline", "measure_subject", "guards_subject",
                "edit_apply", "restore_verify", "write"):  # fmt: skip
        assert key in keys, key
    assert "total" not in keys and "digest_baseline" in t["overlapped"]
    # The threads' work (the digests, the edit's backups, the guards' libraries) is beside
    # the keys, never among them.
    beside = {"digest_baseline", "digest_subject", "digest_backups", "guards_warm"}
    assert beside <= set(t["overlapped"])
    assert not beside & set(keys)
    assert min(keys.values()) >= 0
    assert abs(sum(keys.values()) + t["unattributed"] - t["total"]) < 1e-3
    assert 0 <= t["unattributed"] < 0.05 * t["total"]
    assert abs(keys["evaluation_other"]) < 0.05 * t["total"]
    assert "time: " in r.out and "unattributed" in r.out
    memory = t["host_memory"]  # Linux: peak, private and file-mapped resident bytes
    assert memory["peak_rss"] >= memory["rss_anon"] > 0 and memory["rss_file"] >= 0


def test_unknown_forward_is_a_usage_error(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, no_measuring: None
) -> None:
    r = _run(cli, tiny_dir, tmp_path / "o", "--edit", "noop", "--forward", "fast")
    _only_error(r, 2, "unknown --forward 'fast'", "auto, native, transformers")
    assert not (tmp_path / "o").exists()


def test_native_forward_refused_before_measuring(
    cli: Callable[..., Result],
    tmp_path: Path,
    no_measuring: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--forward native with a model it cannot run: one line naming model and reason, exit 2,
    nothing measured; the directory made for the run is removed again."""
    from tests.models import save_tiny

    gpt2 = save_tiny(tmp_path / "gpt2", "gpt2")
    capsys.readouterr()  # the save's progress bar
    r = _run(cli, gpt2, tmp_path / "o", "--edit", "noop", "--forward", "native")
    _only_error(r, 2, "--forward native cannot run", "model_type 'gpt2'")
    assert not (tmp_path / "o").exists()
