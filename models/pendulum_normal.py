"""SAC on Pendulum-v1: a TanhNormal policy whose actions lie in the action spec's bounds.

A policy file for ``rlpol export`` and a CleanRL-style recipe, readable top to bottom:

* ``make_env()`` and ``make_policy(env)`` give the environment and the trained policy, its
  weights loaded from ``models/weights/pendulum_normal.pt`` (a plain ``state_dict``);
* ``python models/pendulum_normal.py train [--total-steps N] [--seed S] [--out PATH]`` trains
  it again; the same seed gives the same weights (on one machine, one thread);
* ``python models/pendulum_normal.py evaluate [--weights PATH]`` prints the mean return over
  20 seeded episodes, exploration off (``ExplorationType.DETERMINISTIC``).

The policy, built by :func:`build_policy` for training and deployment alike::

    ProbabilisticActor(
        TensorDictModule(MLP(3 -> 2) + NormalParamExtractor, ["observation"] -> ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,  # low / high from env.action_spec: [-2, 2]
        return_log_prob=True,           # "action_log_prob", used by the SAC losses
    )

``RANDOM``: ``action = 2 * tanh(loc + scale * noise)``; ``DETERMINISTIC``: ``2 * tanh(loc)``.
It is trained by SAC with twin Q critics, Polyak-averaged target critics and automatic
entropy tuning. Importing this file builds nothing and trains nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from rlpol.toolkit.envs import EnvBase, GymEnv
from rlpol.toolkit.modules import (
    MLP,
    ExplorationType,
    NormalParamExtractor,
    ProbabilisticActor,
    TanhNormal,
    TensorDictModule,
    set_exploration_type,
)

ENV_ID = "Pendulum-v1"
RETURN_THRESHOLD = -250.0
"""The mean return over 20 seeded deterministic episodes that the shipped weights reach."""
WEIGHTS = Path(__file__).resolve().parent / "weights" / "pendulum_normal.pt"
EVAL_SEED = 1_000_000
"""Episode ``i`` of an evaluation starts from seed ``EVAL_SEED + i`` (never a training seed)."""


# -- hyper-parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The hyper-parameters of the recipe; the defaults reproduce the shipped weights."""

    seed: int = 1
    """Seeds torch (initial weights, actions, replay sampling) and the env's first reset."""
    total_steps: int = 15_000
    """Environment steps collected in all; one gradient step of each network per step."""
    num_cells: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic (ReLU activations)."""
    actor_lr: float = 3e-4
    """Adam's step size for the actor."""
    critic_lr: float = 3e-4
    """Adam's step size for the critics."""
    alpha_lr: float = 3e-4
    """Adam's step size for the log of the entropy coefficient."""
    alpha_init: float = 1.0
    """Initial entropy coefficient."""
    buffer_size: int = 100_000
    """Transitions the replay buffer holds; the oldest are overwritten first."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak factor: ``target <- (1 - tau) * target + tau * critic`` after each step."""
    learning_starts: int = 1_000
    """Steps of uniformly random actions before the first gradient step."""
    num_threads: int = 1
    """Torch threads while training (1: reproducible, and fair to a shared machine)."""
    log_interval: int = 2_500
    """Steps between two progress lines."""


# -- environment and policy ------------------------------------------------------------------
def make_env() -> EnvBase:
    """The environment the policy acts in: ``GymEnv("Pendulum-v1")``, actions in [-2, 2]."""
    return GymEnv(ENV_ID)


def build_policy(env: EnvBase, config: Config | None = None) -> ProbabilisticActor:
    """The policy with freshly initialised weights (call ``torch.manual_seed`` first)."""
    config = config or Config()
    n_obs = env.observation_spec["observation"].shape[-1]
    n_actions = env.action_spec.shape[-1]
    backbone = nn.Sequential(
        MLP(n_obs, 2 * n_actions, num_cells=list(config.num_cells), activation_class=nn.ReLU),
        NormalParamExtractor(),  # [loc, scale]: scale = softplus, > 0
    )
    return ProbabilisticActor(
        TensorDictModule(backbone, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=TanhNormal,
        return_log_prob=True,
    )


def make_policy(env: EnvBase, weights: str | os.PathLike[str] = WEIGHTS) -> TensorDictModuleBase:
    """The trained policy: :func:`build_policy` with the shipped weights loaded."""
    policy = build_policy(env)
    policy.load_state_dict(torch.load(weights, weights_only=True))
    return policy


# -- evaluation ------------------------------------------------------------------------------
def evaluate(policy: TensorDictModuleBase, env: EnvBase, *, episodes: int = 20) -> float:
    """The mean undiscounted return of ``episodes`` seeded episodes, exploration off."""
    returns = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for episode in range(episodes):
            env.set_seed(EVAL_SEED + episode)
            rollout = env.rollout(100_000, policy, break_when_any_done=True)
            returns.append(rollout["next", "reward"].sum().item())
    return sum(returns) / len(returns)


# -- training --------------------------------------------------------------------------------
class ReplayBuffer:
    """A ring buffer of transitions in preallocated tensors, sampled uniformly."""

    def __init__(self, capacity: int, n_obs: int, n_actions: int) -> None:
        self.observation = torch.zeros(capacity, n_obs)
        self.action = torch.zeros(capacity, n_actions)
        self.reward = torch.zeros(capacity)
        self.next_observation = torch.zeros(capacity, n_obs)
        self.terminated = torch.zeros(capacity)  # 1.0 where the episode ended for good
        self.capacity, self.size, self.cursor = capacity, 0, 0

    def add(self, stepped: TensorDictBase) -> None:
        """Store the transition of a TED tensordict returned by ``env.step``."""
        i = self.cursor
        self.observation[i] = stepped["observation"]
        self.action[i] = stepped["action"]
        self.reward[i] = stepped["next", "reward"].squeeze(-1)
        self.next_observation[i] = stepped["next", "observation"]
        self.terminated[i] = stepped["next", "terminated"].squeeze(-1).float()
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        index = torch.randint(self.size, (batch_size,))
        return (
            self.observation[index],
            self.action[index],
            self.reward[index],
            self.next_observation[index],
            self.terminated[index],
        )


def sample_actions(
    policy: TensorDictModuleBase, observation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparametrised actions ``[B, d]`` and their log-probabilities ``[B]`` for a batch."""
    td = TensorDict(observation=observation, batch_size=observation.shape[:1])
    with set_exploration_type(ExplorationType.RANDOM):
        td = policy(td)
    return td["action"], td["action_log_prob"]


class SAC:
    """The networks and optimisers of SAC around ``policy``, and one update step."""

    def __init__(self, policy: ProbabilisticActor, n_obs: int, n_actions: int, config: Config):
        cells = list(config.num_cells)
        self.policy, self.config = policy, config
        self.critics = nn.ModuleList(
            MLP(n_obs + n_actions, 1, num_cells=cells, activation_class=nn.ReLU) for _ in range(2)
        )
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.alpha_init), requires_grad=True)
        self.target_entropy = -float(n_actions)
        self.actor_optimizer = torch.optim.Adam(policy.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)

    def q_values(
        self, critics: nn.ModuleList, observation: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """The smaller of the two critics' values, ``[B]``: the clipped double-Q estimate."""
        first, second = (critic(observation, action).squeeze(-1) for critic in critics)
        return torch.min(first, second)

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """One gradient step of the critics, the actor and the entropy coefficient."""
        observation, action, reward, next_observation, terminated = batch
        alpha = self.log_alpha.exp().detach()

        # Critics: regress both onto r + gamma * (min target Q(s', a') - alpha * log pi(a'|s')).
        with torch.no_grad():
            next_action, next_log_prob = sample_actions(self.policy, next_observation)
            next_value = self.q_values(self.target_critics, next_observation, next_action)
            next_value = next_value - alpha * next_log_prob
            target = reward + self.config.gamma * (1.0 - terminated) * next_value
        critic_loss = sum(
            nn.functional.mse_loss(critic(observation, action).squeeze(-1), target)
            for critic in self.critics
        )
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        # Actor: maximise min Q(s, a) - alpha * log pi(a|s) with a ~ pi(.|s) reparametrised.
        new_action, log_prob = sample_actions(self.policy, observation)
        new_value = self.q_values(self.critics, observation, new_action)
        actor_loss = (alpha * log_prob - new_value).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()

        # Entropy coefficient: drive the policy's entropy towards -dim(action).
        alpha_loss = -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        # Target critics: Polyak averaging.
        with torch.no_grad():
            for target_p, p in zip(self.target_critics.parameters(), self.critics.parameters()):
                target_p.lerp_(p, self.config.tau)
        return {"critic": critic_loss.item(), "actor": actor_loss.item(), "alpha": alpha.item()}


def run_sac(config: Config) -> ProbabilisticActor:
    """Train the policy with SAC and return it."""
    torch.manual_seed(config.seed)
    env = make_env()
    env.set_seed(config.seed)
    n_obs = env.observation_spec["observation"].shape[-1]
    n_actions = env.action_spec.shape[-1]
    policy = build_policy(env, config)
    sac = SAC(policy, n_obs, n_actions, config)
    buffer = ReplayBuffer(config.buffer_size, n_obs, n_actions)

    start, episode_return, returns, losses = time.perf_counter(), 0.0, [], {}
    eval_env = make_env()  # for the progress lines only
    td = env.reset()
    for step in range(1, config.total_steps + 1):
        # Collect one transition: random actions first, then the stochastic policy.
        if step <= config.learning_starts:
            td = env.rand_action(td)
        else:
            with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
                td = policy(td)
        stepped, td = env.step_and_maybe_reset(td)
        buffer.add(stepped)
        episode_return += stepped["next", "reward"].item()
        if stepped["next", "done"].item():
            returns.append(episode_return)
            episode_return = 0.0

        # Learn from a batch of past transitions.
        if step > config.learning_starts:
            losses = sac.update(buffer.sample(config.batch_size))

        if step % config.log_interval == 0:
            recent = returns[-5:] or [float("nan")]
            print(
                f"step {step:>7}  episodes {len(returns):>4}  "
                f"return(last 5) {sum(recent) / len(recent):8.1f}  "
                f"deterministic return(5) {evaluate(policy, eval_env, episodes=5):8.1f}  "
                f"alpha {losses.get('alpha', float('nan')):.3f}  "
                f"{time.perf_counter() - start:6.0f}s",
                flush=True,
            )
    env.close()
    eval_env.close()
    return policy


def save_weights(state_dict: dict, out: str | os.PathLike[str]) -> Path:
    """Write ``state_dict`` to ``out`` atomically: a temp file beside it, then a rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state_dict, handle)
        os.chmod(temp, 0o644)  # mkstemp makes it private; weights are for everyone to read
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return out


def train(config: Config, out: str | os.PathLike[str] = WEIGHTS) -> Path:
    """Run the recipe with ``config`` and write the policy's ``state_dict`` to ``out``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        policy = run_sac(config)
    finally:
        torch.set_num_threads(threads)
    return save_weights(policy.state_dict(), out)


# -- command line ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train the policy and write its weights")
    train_parser.add_argument("--total-steps", type=int, default=Config.total_steps)
    train_parser.add_argument("--seed", type=int, default=Config.seed)
    train_parser.add_argument("--out", type=Path, default=WEIGHTS)
    eval_parser = commands.add_parser("evaluate", help="print the mean return of 20 episodes")
    eval_parser.add_argument("--weights", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)

    if args.command == "train":
        start = time.perf_counter()
        config = replace(Config(), total_steps=args.total_steps, seed=args.seed)
        out = train(config, out=args.out)
        print(f"wrote {out} after {time.perf_counter() - start:.0f}s")
    else:
        env = make_env()
        mean = evaluate(make_policy(env, args.weights), env)
        print(f"mean return over 20 episodes: {mean:.1f} (threshold {RETURN_THRESHOLD})")


if __name__ == "__main__":
    main()
