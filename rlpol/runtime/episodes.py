"""Run whole episodes with a policy and summarise their returns (``rlpol run``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from rlpol.toolkit.envs import EnvBase, step_mdp
from rlpol.toolkit.keys import DONE, NEXT, REWARD
from rlpol.toolkit.modules import ExplorationType, set_exploration_type

__all__ = ["EpisodeResult", "run_episodes", "summarize"]

Policy = Callable[[TensorDictBase], TensorDictBase]
Frame = Callable[[], object]


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode: its undiscounted return and its length in steps."""

    episode: int
    episode_return: float
    length: int


def run_episodes(
    env: EnvBase,
    policy: Policy,
    *,
    episodes: int,
    seed: int = 0,
    exploration: ExplorationType | str = ExplorationType.DETERMINISTIC,
    max_steps: int = 100_000,
    on_frame: Callable[[object], None] | None = None,
) -> Iterator[EpisodeResult]:
    """Yield one :class:`EpisodeResult` per episode of ``policy`` in a single env.

    Episode ``i`` starts from ``env.set_seed(seed + i)`` after ``torch.manual_seed(seed)``
    once, so the run is reproducible. ``on_frame`` receives ``env.render()`` after every
    reset and step (make the env with ``render_mode="rgb_array"``).
    """
    if env.batch_size:
        raise ValueError(f"run_episodes needs a single env, got batch size {env.batch_size}")
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType(exploration)):
        for episode in range(episodes):
            env.set_seed(seed + episode)
            root = env.reset()
            total, length = 0.0, 0
            if on_frame is not None:
                on_frame(env.render())
            while length < max_steps:
                stepped = env.step(policy(root))
                total += float(stepped.get((NEXT, REWARD)))
                length += 1
                if on_frame is not None:
                    on_frame(env.render())
                if bool(stepped.get((NEXT, DONE))):
                    break
                root = step_mdp(stepped)
            yield EpisodeResult(episode, total, length)


def summarize(results: list[EpisodeResult]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the returns."""
    returns = [result.episode_return for result in results]
    if not returns:
        return float("nan"), float("nan")
    return statistics.fmean(returns), statistics.pstdev(returns)
