"""Which models a server serves: artifact files, ``name=PATH`` pairs, model repositories.

Each argument of ``rlpol serve`` is one of:

* an artifact file (``cartpole.onnx``): the model is named after the file's stem, version 1;
* ``name=PATH``: the same, named ``name``;
* a directory laid out as Triton's model repository, ``DIR/<name>/<version>/model.onnx``
  (or ``model.pt``, ``model.pt2``), versions being positive integers: every version of every
  model in it.

A request without a version gets a model's highest version (Triton's default policy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rlpol.errors import RequestError, ServeError
from rlpol.serve.model import ServedModel

__all__ = ["MODEL_FILES", "ModelRepository", "ModelSource", "resolve_sources"]

MODEL_FILES = ("model.onnx", "model.pt", "model.pt2")
"""The file names a repository's version directory may hold, in order of preference."""
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True)
class ModelSource:
    """One model version to serve: its name, version and artifact file."""

    name: str
    version: str
    path: Path


def _check_name(name: str, argument: str) -> str:
    if not _NAME.match(name):
        raise ServeError(
            f"model name {name!r} (from {argument!r}) is not a valid name; use letters, digits, "
            "'_', '-' and '.', for example cartpole=policy.onnx"
        )
    return name


def _repository(directory: Path) -> list[ModelSource]:
    sources = []
    for model_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if not version_dir.name.isdigit() or int(version_dir.name) < 1:
                continue  # Triton ignores non-numeric version directories too
            files = [version_dir / name for name in MODEL_FILES if (version_dir / name).is_file()]
            if not files:
                raise ServeError(
                    f"model repository {str(directory)!r}: {str(version_dir)!r} holds none of "
                    f"{list(MODEL_FILES)}; put the artifact there as one of those names"
                )
            name = _check_name(model_dir.name, str(model_dir))
            sources.append(ModelSource(name, str(int(version_dir.name)), files[0]))
    if not sources:
        raise ServeError(
            f"model repository {str(directory)!r} holds no model; expected "
            "DIR/<name>/<version>/model.onnx (Triton's layout)"
        )
    return sources


def resolve_sources(arguments: list[str]) -> list[ModelSource]:
    """The model versions named by ``rlpol serve``'s arguments.

    Raises:
        ServeError: an argument names no file or directory, a bad name, an empty
            repository, or two arguments give the same name and version.
    """
    sources: list[ModelSource] = []
    for argument in arguments:
        name, sep, rest = argument.partition("=")
        path = Path(rest if sep else argument)
        if not path.exists():
            raise ServeError(f"{argument!r}: no such file or directory; expected an artifact "
                             "file, name=PATH or a model repository directory")  # fmt: skip
        if path.is_dir():
            if sep:
                raise ServeError(f"{argument!r}: a model repository takes no name= prefix")
            sources.extend(_repository(path))
        else:
            sources.append(ModelSource(_check_name(name if sep else path.stem, argument), "1",
                                       path))  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for source in sources:
        if (source.name, source.version) in seen:
            raise ServeError(
                f"model {source.name!r} version {source.version} is given twice (again by "
                f"{str(source.path)!r}); name one of them with name=PATH"
            )
        seen.add((source.name, source.version))
    return sources


class ModelRepository:
    """The loaded models, by name and version.

    Args:
        sources: the versions to load.
        trust_code: allow ``.pt2`` archives (their loader runs code stored in the file).

    Raises:
        ArtifactError: a file is not a loadable rlpol artifact.
    """

    def __init__(self, sources: list[ModelSource], *, trust_code: bool = False) -> None:
        self.models: dict[str, dict[str, ServedModel]] = {}
        for source in sources:
            model = ServedModel(source.name, source.version, source.path, trust_code=trust_code)
            self.models.setdefault(source.name, {})[source.version] = model
        for name, versions in self.models.items():
            self.models[name] = dict(sorted(versions.items(), key=lambda item: int(item[0])))

    def __iter__(self):
        for versions in self.models.values():
            yield from versions.values()

    def versions(self, name: str) -> list[str]:
        """The versions of model ``name``, ascending."""
        return list(self.models[name])

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """Model ``name`` at ``version`` (None: its highest).

        Raises:
            RequestError: (404) no such model or version.
        """
        versions = self.models.get(name)
        if versions is None:
            raise RequestError(
                f"unknown model {name[:100]!r}; this server serves {sorted(self.models)}",
                status=404,
            )
        if version is None or version == "":
            return versions[next(reversed(versions))]
        model = versions.get(version)
        if model is None:
            raise RequestError(
                f"model {name!r} has no version {version[:40]!r}; its versions are "
                f"{list(versions)}",
                status=404,
            )
        return model
