"""Where a model comes from: the embedded demo, a local directory or GGUF file, a hub id, or
a random-init model of a config's shape built on the devices (``random:<dir>[@seed]``).

Parsing is pure (no torch, no filesystem writes) so the CLI can reject a bad ``--baseline``
before anything heavy is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from editproof.errors import InvalidInputError, NotFoundError, UsageError

SourceKind = Literal["demo", "local", "gguf", "hub", "random"]

DEMO_NAME = "demo"
RANDOM_PREFIX = "random:"
# owner/name with an optional @revision (branch, tag or commit).
_HUB_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?:@[\w./-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    """A parsed model reference. ``spec`` is exactly what the user wrote."""

    kind: SourceKind
    spec: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    seed: int | None = None  # random: the initialisation seed

    @property
    def identity(self) -> tuple[str, str]:
        """What the source points at, whatever the spelling (``./m`` and ``m`` are one)."""
        if self.kind == "hub":
            return ("hub", f"{self.repo_id}@{self.revision or 'main'}")
        if self.kind == "random":
            return ("random", f"{self.path}@{self.seed}")
        return (self.kind, str(self.path) if self.path is not None else self.spec)

    @property
    def label(self) -> str:
        if self.kind == "hub":
            return f"{self.repo_id}@{self.revision or 'main'}"
        if self.kind == "random":
            return f"{RANDOM_PREFIX}{self.path}@{self.seed}"
        if self.path is not None:
            return str(self.path)
        return self.spec


def parse_source(spec: str) -> ModelSource:
    """Turn a ``--baseline``/``--subject`` value into a :class:`ModelSource`.

    A string that names an existing path is always local, so a local folder called
    ``org/name`` wins over the hub id of the same spelling.
    """
    spec = spec.strip()
    if not spec:
        raise UsageError("model source is empty: give 'demo', a local directory or 'org/name@rev'")
    if spec == DEMO_NAME:
        return ModelSource(kind="demo", spec=spec)
    if spec.startswith(RANDOM_PREFIX):
        return _random_source(spec)
    path = Path(spec).expanduser()
    if path.exists():
        return _local_source(spec, path)
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf"):
        raise NotFoundError(f"model path '{spec}' does not exist")
    if _HUB_RE.match(spec):
        repo_id, _, revision = spec.partition("@")
        return ModelSource(kind="hub", spec=spec, repo_id=repo_id, revision=revision or None)
    raise UsageError(
        f"cannot read model source '{spec}': expected 'demo', an existing local directory, "
        "a .gguf file, a hub id like 'org/name@revision' or random:<config dir>[@seed]"
    )


def _local_source(spec: str, path: Path) -> ModelSource:
    path = path.resolve()
    if path.is_file():
        if path.suffix == ".gguf":
            return ModelSource(kind="gguf", spec=spec, path=path)
        raise InvalidInputError(
            f"'{spec}' is a file but not a .gguf model; give the model's directory instead"
        )
    if not (path / "config.json").is_file():
        raise NotFoundError(f"no config.json in '{spec}': not a Hugging Face model directory")
    return ModelSource(kind="local", spec=spec, path=path)


def _random_source(spec: str) -> ModelSource:
    """``random:<dir>[@seed]``: a config and tokenizer directory, weights drawn on the devices."""
    rest = spec[len(RANDOM_PREFIX) :]
    folder, at, seed_text = rest.rpartition("@")
    if not at or not seed_text.isdigit():
        folder, seed_text = rest, "0"
    path = Path(folder).expanduser()
    if not folder or not (path / "config.json").is_file():
        raise NotFoundError(
            f"model source '{spec}': random:<dir>[@seed] needs a directory with a config.json"
        )
    return ModelSource(kind="random", spec=spec, path=path.resolve(), seed=int(seed_text))
