"""The run store: run-directory layout and the task table in ``state/state.sqlite`` (WAL).

Workers and the driver share the table; every state change is one short transaction, so a
process killed at any point leaves the table consistent. An output file is written
atomically (temp file, fsync, rename) *before* its task is marked done, with its sha256;
``verify_outputs`` re-checks those digests on ``--resume`` and puts back to ``pending`` any
task whose outputs are missing or changed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from editproof.errors import OutputError
from editproof.fileio import file_sha256

Status = Literal["pending", "running", "done", "failed", "skipped"]
STATE_DIR = "state"
DB_NAME = "state.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    model TEXT NOT NULL,
    scenario TEXT,
    run INTEGER,
    deps TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    not_before REAL NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    seconds REAL,
    outputs TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    error_kind TEXT,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    pid INTEGER,
    model TEXT,
    device TEXT,
    task TEXT,
    phase TEXT,
    done INTEGER,
    total INTEGER,
    rate REAL,
    heartbeat REAL
);
"""


@dataclass
class Task:
    id: str
    type: str
    model: str
    scenario: str | None = None
    run: int | None = None
    deps: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    status: Status = "pending"
    attempts: int = 0
    worker: str | None = None
    not_before: float = 0.0
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


_COLUMNS = (
    "id, type, model, scenario, run, deps, params, status, attempts, worker, not_before, "
    "started, finished, seconds, outputs, error, error_kind, history"
)


def _task(row: tuple[Any, ...]) -> Task:
    (tid, typ, model, scen, run, deps, params, status, attempts, worker, nb, st, fin, sec, outs,
     err, kind, hist) = row  # fmt: skip
    return Task(
        id=tid,
        type=typ,
        model=model,
        scenario=scen,
        run=run,
        deps=json.loads(deps),
        params=json.loads(params),
        status=status,
        attempts=attempts,
        worker=worker,
        not_before=nb,
        started=st,
        finished=fin,
        seconds=sec,
        outputs=json.loads(outs),
        error=err,
        error_kind=kind,
        history=json.loads(hist),
    )


class Store:
    """One run directory's task table. Cheap to open; open one per process."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        path = run_dir / STATE_DIR / DB_NAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"cannot open the run state {path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- planning ---------------------------------------------------------------------------

    def add_tasks(self, tasks: Iterable[Task]) -> int:
        """Insert tasks not present yet (by id); returns how many were new."""
        added = 0
        with self._tx() as db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
            for t in tasks:
                seq += 1
                cur = db.execute(
                    "INSERT OR IGNORE INTO tasks (id, seq, type, model, scenario, run, deps, "
                    "params, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        t.id,
                        seq,
                        t.type,
                        t.model,
                        t.scenario,
                        t.run,
                        json.dumps(t.deps),
                        json.dumps(t.params, sort_keys=True),
                        t.status,
                    ),
                )
                added += cur.rowcount
        return added

    def tasks(self, model: str | None = None) -> list[Task]:
        sql = f"SELECT {_COLUMNS} FROM tasks"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE model = ?"
            args = (model,)
        return [_task(r) for r in self._db.execute(sql + " ORDER BY seq", args)]

    def get(self, task_id: str) -> Task:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise KeyError(task_id)
        return _task(row)

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        return {s: n for s, n in rows}

    # -- claiming and finishing ---------------------------------------------------------------

    def claim(self, model: str, worker: str, types: Iterable[str] | None = None) -> Task | None:
        """The next pending task of ``model`` whose dependencies are done, marked running.

        Pending tasks whose dependency failed are failed here too ("dependency failed").
        """
        allowed = set(types) if types is not None else None
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE model = ? ORDER BY seq", (model,)
            ).fetchall()
            tasks = [_task(r) for r in rows]
            status = {t.id: t.status for t in tasks}
            for t in tasks:
                if t.status != "pending" or (allowed is not None and t.type not in allowed):
                    continue
                bad = [d for d in t.deps if status.get(d) in ("failed", "skipped")]
                if bad:
                    db.execute(
                        "UPDATE tasks SET status='failed', error=?, error_kind='dependency', "
                        "finished=? WHERE id=?",
                        (f"dependency failed: {', '.join(bad)}", now, t.id),
                    )
                    status[t.id] = "failed"
                    continue
                if all(status.get(d) == "done" for d in t.deps) and t.not_before <= now:
                    db.execute(
                        "UPDATE tasks SET status='running', worker=?, started=?, "
                        "attempts=attempts+1 WHERE id=?",
                        (worker, now, t.id),
                    )
                    t.status, t.worker, t.started, t.attempts = (
                        "running",
                        worker,
                        now,
                        t.attempts + 1,
                    )
                    return t
        return None

    def has_open(self, model: str) -> bool:
        row = self._db.execute(
            "SELECT COUNT(*) FROM tasks WHERE model=? AND status IN ('pending','running')",
            (model,),
        ).fetchone()
        return bool(row[0])

    def has_pending(self, model: str) -> bool:
        row = self._db.execute(
            "SELECT COUNT(*) FROM tasks WHERE model=? AND status='pending'", (model,)
        ).fetchone()
        return bool(row[0])

    def finish(self, task_id: str, outputs: dict[str, str], seconds: float) -> None:
        """Mark done with the sha256 of each output (paths relative to the run dir)."""
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET status='done', outputs=?, seconds=?, finished=?, error=NULL, "
                "error_kind=NULL WHERE id=?",
                (json.dumps(outputs, sort_keys=True), seconds, time.time(), task_id),
            )

    def skip(self, task_id: str, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET status='skipped', error=?, error_kind='skipped', finished=? "
                "WHERE id=?",
                (reason, time.time(), task_id),
            )

    def fail_open(self, model: str, reason: str) -> None:
        """Every pending or running task of ``model`` fails for good: no worker can run them
        (its workers keep dying, or it needs more devices than there are)."""
        for task in self.tasks(model):
            if task.status in ("pending", "running"):
                self.fail(task.id, reason, "worker_died")

    def fail(
        self, task_id: str, error: str, kind: str, *, retry_after: float | None = None
    ) -> None:
        """Record a failed attempt: back to pending (after ``retry_after`` s) or failed."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT history FROM tasks WHERE id=?", (task_id,)).fetchone()
            history = json.loads(row[0]) if row else []
            history.append({"error": error, "kind": kind, "at": now})
            if retry_after is not None:
                db.execute(
                    "UPDATE tasks SET status='pending', worker=NULL, not_before=?, error=?, "
                    "error_kind=?, history=? WHERE id=?",
                    (now + retry_after, error, kind, json.dumps(history), task_id),
                )
            else:
                db.execute(
                    "UPDATE tasks SET status='failed', error=?, error_kind=?, finished=?, "
                    "history=? WHERE id=?",
                    (error, kind, now, json.dumps(history), task_id),
                )

    def set_params(self, task_id: str, params: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET params=? WHERE id=?",
                (json.dumps(params, sort_keys=True), task_id),
            )

    def running(self) -> list[Task]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE status='running'")
        return [_task(r) for r in rows]

    # -- resume -------------------------------------------------------------------------------

    def reset_for_resume(self) -> list[str]:
        """Running tasks (their process is gone) and failed ones go back to pending, with
        their attempt counters cleared; returns their ids."""
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute("SELECT id FROM tasks WHERE status IN ('running','failed')")
            ]
            db.execute(
                "UPDATE tasks SET status='pending', worker=NULL, attempts=0, not_before=0 "
                "WHERE status IN ('running','failed')"
            )
            db.execute("DELETE FROM workers")
        return ids

    def verify_outputs(self) -> list[str]:
        """Done tasks whose recorded outputs are missing or changed go back to pending."""
        bad: list[str] = []
        for t in self.tasks():
            if t.status != "done":
                continue
            for rel, digest in t.outputs.items():
                path = self.run_dir / rel
                if not path.is_file() or file_sha256(path) != digest:
                    bad.append(t.id)
                    break
        if bad:
            with self._tx() as db:
                for tid in bad:
                    db.execute(
                        "UPDATE tasks SET status='pending', outputs='{}', attempts=0 WHERE id=?",
                        (tid,),
                    )
        return bad

    # -- worker heartbeat (the live view reads it) ----------------------------------------

    def heartbeat(self, worker: str, **fields: Any) -> None:
        fields["heartbeat"] = time.time()
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{k}=excluded.{k}" for k in fields)
        self._db.execute(
            f"INSERT INTO workers (id, {cols}) VALUES (?, {marks}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            (worker, *fields.values()),
        )

    def workers(self) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT id, pid, model, device, task, phase, done, total, rate, heartbeat FROM workers "
            "ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def drop_worker(self, worker: str) -> None:
        self._db.execute("DELETE FROM workers WHERE id=?", (worker,))
