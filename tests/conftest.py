"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# CI runs the same examples every time (no flaky first-seen failures), with no per-example
# deadline on a loaded 2-core machine; locally hypothesis explores new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

CUDA = torch.cuda.is_available()

# Small-batch RL inference is fastest on one thread, and with ParallelEnv workers sharing the
# CI machine's 2 cores, OpenMP threads spinning at barriers make each op take milliseconds.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``cuda`` cleanly on machines without a GPU."""
    if CUDA:
        return
    skip = pytest.mark.skip(reason="CUDA not available")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch generator state."""
    torch.manual_seed(0)


class ArtifactCache:
    """Exports each (policy case, format, exploration) once per test session."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self._cache: dict = {}

    def get(self, case_name: str, suffix: str, exploration: str):
        """``(env, policy, path)`` for the case, exported to ``suffix`` under ``exploration``."""
        from rlpol import export_policy
        from rlpol.testing import policy_case

        key = (case_name, suffix, exploration)
        if key not in self._cache:
            case = policy_case(case_name)
            env = case.make_env()
            policy = case.make_policy(env)
            path = export_policy(
                policy, self.directory / f"{case_name}-{exploration}{suffix}", env=env,
                exploration=exploration,
            )
            self._cache[key] = (env, policy, path)
        return self._cache[key]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> ArtifactCache:
    return ArtifactCache(tmp_path_factory.mktemp("artifacts"))


class RecurrentArtifactCache:
    """Exports each recurrent (module kind, layers, format, exploration) once per session."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self._cache: dict = {}

    def get(self, kind: str, num_layers: int, suffix: str, exploration: str):
        """``(policy, path)``: ``rlpol.testing.recurrent_qvalue(kind, num_layers)``, exported."""
        from rlpol import export_policy
        from rlpol.testing import recurrent_env, recurrent_qvalue

        key = (kind, num_layers, suffix, exploration)
        if key not in self._cache:
            policy = recurrent_qvalue(kind, num_layers)
            path = export_policy(
                policy, self.directory / f"{kind}{num_layers}-{exploration}{suffix}",
                env=recurrent_env(policy), exploration=exploration,
            )  # fmt: skip
            self._cache[key] = (policy, path)
        return self._cache[key]


@pytest.fixture(scope="session")
def recurrent_artifacts(tmp_path_factory) -> RecurrentArtifactCache:
    return RecurrentArtifactCache(tmp_path_factory.mktemp("recurrent_artifacts"))


class BundleCache:
    """Bundles each (shipped model, exploration) once per test session, without AOTI."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self._cache: dict = {}

    def get(self, model, exploration: str):
        """``(loaded policy file, bundle path)`` for ``models/<model>.py`` under ``exploration``."""
        from rlpol.export import load_policy_file
        from rlpol.export.bundle import write_bundle

        key = (str(model), exploration)
        if key not in self._cache:
            loaded = load_policy_file(model)
            path = write_bundle(
                loaded.policy, self.directory / f"{loaded.path.stem}-{exploration}",
                env=loaded.env, exploration=exploration, policy_file=model,
            )
            self._cache[key] = (loaded, path)
        return self._cache[key]


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("bundles"))
