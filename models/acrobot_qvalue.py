"""DQN on Acrobot-v1: a greedy Q-value policy with epsilon-greedy exploration.

A policy file for ``rlpol export`` and a CleanRL-style recipe, readable top to bottom:

* ``make_env()`` and ``make_policy(env)`` give the environment and the trained policy, its
  weights loaded from ``models/weights/acrobot_qvalue.pt`` (a plain ``state_dict``);
* ``python models/acrobot_qvalue.py train [--total-steps N] [--seed S] [--out PATH]`` trains
  it again; the same seed gives the same weights (on one machine, one thread);
* ``python models/acrobot_qvalue.py evaluate [--weights PATH]`` prints the mean return over
  20 seeded episodes, exploration off (``ExplorationType.DETERMINISTIC``).

The policy, built by :func:`build_policy` for training and deployment alike::

    TensorDictSequential(
        TensorDictModule(MLP(6 -> 3), ["observation"] -> ["action_value"]),
        QValueModule(env.action_spec),   # "action": one_hot(argmax), int64 [3]
        EGreedyModule(env.action_spec),  # a random action w.p. eps; identity when DETERMINISTIC
    )

Importing this file builds nothing and trains nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from rlpol.toolkit.envs import EnvBase, GymEnv
from rlpol.toolkit.modules import (
    MLP,
    EGreedyModule,
    ExplorationType,
    QValueModule,
    TensorDictModule,
    TensorDictSequential,
    set_exploration_type,
)

ENV_ID = "Acrobot-v1"
RETURN_THRESHOLD = -100.0
"""The mean return over 20 seeded deterministic episodes that the shipped weights reach."""
WEIGHTS = Path(__file__).resolve().parent / "weights" / "acrobot_qvalue.pt"
EVAL_SEED = 1_000_000
"""Episode ``i`` of an evaluation starts from seed ``EVAL_SEED + i`` (never a training seed)."""


# -- hyper-parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The hyper-parameters of the recipe; the defaults reproduce the shipped weights."""

    seed: int = 1
    """Seeds torch (initial weights, exploration, replay sampling) and the env's first reset."""
    total_steps: int = 80_000
    """Environment steps collected in all."""
    num_cells: tuple[int, ...] = (64, 64)
    """Hidden widths of the Q-network (ReLU activations)."""
    learning_rate: float = 5e-4
    """Adam's initial step size."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 at ``total_steps``: the last updates settle the policy."""
    buffer_size: int = 50_000
    """Transitions the replay buffer holds; the oldest are overwritten first."""
    batch_size: int = 128
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    learning_starts: int = 1_000
    """Steps of pure collection before the first gradient step."""
    train_frequency: int = 1
    """One gradient step every ``train_frequency`` environment steps."""
    target_update_interval: int = 500
    """Steps between two copies of the Q-network into the target network."""
    max_grad_norm: float = 10.0
    """Gradients are clipped to this global norm."""
    eps_init: float = 1.0
    """Initial probability of a random action."""
    eps_end: float = 0.05
    """Final probability of a random action."""
    exploration_steps: int = 10_000
    """Steps over which ``EGreedyModule.step()`` anneals eps linearly to ``eps_end``."""
    num_threads: int = 1
    """Torch threads while training (1: reproducible, and fair to a shared machine)."""
    log_interval: int = 5_000
    """Steps between two progress lines."""


# -- environment and policy ------------------------------------------------------------------
def make_env() -> EnvBase:
    """The environment the policy acts in: ``GymEnv("Acrobot-v1")``, one-hot actions."""
    return GymEnv(ENV_ID)


def build_policy(env: EnvBase, config: Config | None = None) -> TensorDictSequential:
    """The policy with freshly initialised weights (call ``torch.manual_seed`` first)."""
    config = config or Config()
    n_obs = env.observation_spec["observation"].shape[-1]
    n_actions = env.action_spec.shape[-1]
    q_net = MLP(n_obs, n_actions, num_cells=list(config.num_cells), activation_class=nn.ReLU)
    return TensorDictSequential(
        TensorDictModule(q_net, in_keys=["observation"], out_keys=["action_value"]),
        QValueModule(action_space=env.action_spec),
        EGreedyModule(
            env.action_spec,
            eps_init=config.eps_init,
            eps_end=config.eps_end,
            annealing_num_steps=config.exploration_steps,
        ),
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

    def __init__(self, capacity: int, n_obs: int) -> None:
        self.observation = torch.zeros(capacity, n_obs)
        self.action = torch.zeros(capacity, dtype=torch.int64)  # the action's index
        self.reward = torch.zeros(capacity)
        self.next_observation = torch.zeros(capacity, n_obs)
        self.terminated = torch.zeros(capacity)  # 1.0 where the episode ended for good
        self.capacity, self.size, self.cursor = capacity, 0, 0

    def add(self, stepped: TensorDictBase) -> None:
        """Store the transition of a TED tensordict returned by ``env.step``."""
        i = self.cursor
        self.observation[i] = stepped["observation"]
        self.action[i] = stepped["action"].argmax(-1)
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


def dqn_loss(
    q_net: nn.Module, target_net: nn.Module, batch: tuple[torch.Tensor, ...], gamma: float
) -> torch.Tensor:
    """The Huber loss between Q(s, a) and ``r + gamma * max_a' Q_target(s', a')``.

    Truncated episodes bootstrap from ``s'``; only terminated ones do not.
    """
    observation, action, reward, next_observation, terminated = batch
    with torch.no_grad():
        next_value = target_net(next_observation).max(-1).values
        target = reward + gamma * (1.0 - terminated) * next_value
    value = q_net(observation).gather(-1, action.unsqueeze(-1)).squeeze(-1)
    return nn.functional.smooth_l1_loss(value, target)


def run_dqn(config: Config) -> TensorDictSequential:
    """Train the policy with DQN and return it (exploration at its final eps)."""
    torch.manual_seed(config.seed)
    env = make_env()
    env.set_seed(config.seed)
    policy = build_policy(env, config)
    q_net, egreedy = policy[0].module, policy[-1]
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=config.learning_rate)
    buffer = ReplayBuffer(config.buffer_size, env.observation_spec["observation"].shape[-1])

    start, episode_return, returns = time.perf_counter(), 0.0, []
    eval_env = make_env()  # for the progress lines only
    td = env.reset()
    for step in range(1, config.total_steps + 1):
        # Collect one transition with the exploring policy.
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            td = policy(td)
        stepped, td = env.step_and_maybe_reset(td)
        buffer.add(stepped)
        egreedy.step()
        episode_return += stepped["next", "reward"].item()
        if stepped["next", "done"].item():
            returns.append(episode_return)
            episode_return = 0.0

        # Learn from a batch of past transitions.
        if step > config.learning_starts and step % config.train_frequency == 0:
            if config.anneal_lr:
                fraction_left = 1.0 - (step - 1) / config.total_steps
                optimizer.param_groups[0]["lr"] = config.learning_rate * fraction_left
            loss = dqn_loss(q_net, target_net, buffer.sample(config.batch_size), config.gamma)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(q_net.parameters(), config.max_grad_norm)
            optimizer.step()
        if step % config.target_update_interval == 0:
            target_net.load_state_dict(q_net.state_dict())

        if step % config.log_interval == 0:
            recent = returns[-10:] or [float("nan")]
            print(
                f"step {step:>7}  eps {egreedy.eps.item():.3f}  episodes {len(returns):>5}  "
                f"return(last 10) {sum(recent) / len(recent):7.1f}  "
                f"greedy return(5) {evaluate(policy, eval_env, episodes=5):7.1f}  "
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
        policy = run_dqn(config)
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
