"""DAgger on CartPole-v1 without velocities: an LSTM Q-value policy that has to remember.

The policy sees the cart position and the pole angle only (``IndexSelect([0, 2])``); the
velocities it needs to balance the pole must be inferred from past observations. A policy
file for ``rlpol export`` and a CleanRL-style recipe, readable top to bottom:

* ``make_env()`` and ``make_policy(env)`` give the environment and the trained policy, its
  weights loaded from ``models/weights/cartpole_masked_lstm.pt`` (a plain ``state_dict``);
* ``python models/cartpole_masked_lstm.py train [--total-steps N] [--seed S] [--out PATH]``
  trains it again; the same seed gives the same weights (on one machine, one thread);
* ``python models/cartpole_masked_lstm.py evaluate [--weights PATH]`` prints the mean return
  over 20 seeded episodes, exploration off (``ExplorationType.DETERMINISTIC``);
* ``python models/cartpole_masked_lstm.py evaluate --memoryless`` trains the memoryless
  baseline (below) with the same recipe and prints its mean return.

The env and the policy, built by :func:`make_env` and :func:`build_policy`::

    TransformedEnv(GymEnv("CartPole-v1"), Compose(
        IndexSelect([0, 2]),               # "observation": f32 [4] -> [2], folded on export
        ObservationNorm(0, [2.0, 20.0]),   # to order 1, folded on export too
        InitTracker(),                     # "is_init": True where an episode starts
        lstm.make_tensordict_primer(),     # zero "recurrent_state_h" / "_c" at each reset
    ))
    TensorDictSequential(
        LSTMModule(input_size=2, hidden_size=32, in_key="observation", out_key="embed"),
        TensorDictModule(MLP(32 -> 64 -> 2), ["embed"] -> ["action_value"]),
        QValueModule(env.action_spec),     # "action": one_hot(argmax), int64 [2]
        EGreedyModule(env.action_spec),    # a random action w.p. eps; identity when DETERMINISTIC
    )

It is trained by imitation, not by RL: DAgger (Ross et al., 2011) from the full-state DQN
of ``models/cartpole_qvalue.py``. Each round rolls out a mix of expert and learner in
``num_envs`` envs, labels every visited state with the expert's greedy action on the *full*
observation, adds the episodes of the ``[num_envs, rollout_length]`` trajectories to the
data set and fits the LSTM to all of it with cross-entropy, on batches of whole episodes
in recurrent mode (``[B, T]``, ``is_init`` marks where each starts from a zero state).

Memory matters: the same recipe with ``Config(memoryless=True)`` trains an MLP on the masked
observation (2 -> 64 -> 64 -> 2, 4,482 parameters against the LSTM policy's 6,850). With the
default config (seed 1; 12 rounds, 48,000 steps; 64 s on one thread of an idle core, ~160 s
on a loaded one) the shipped LSTM policy's mean return over the 20 evaluation episodes is
500.0 (every episode reaches CartPole's cap); the memoryless baseline's is 16.0, far below
``RETURN_THRESHOLD``.

Importing this file builds nothing and trains nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
from tensordict import TensorDict, TensorDictBase, pad_sequence
from tensordict.nn import TensorDictModuleBase
from torch import nn

from rlpol.toolkit.envs import (
    Compose,
    EnvBase,
    GymEnv,
    IndexSelect,
    InitTracker,
    ObservationNorm,
    SerialEnv,
    TransformedEnv,
)
from rlpol.toolkit.modules import (
    MLP,
    EGreedyModule,
    ExplorationType,
    LSTMModule,
    QValueModule,
    TensorDictModule,
    TensorDictSequential,
    set_exploration_type,
    set_recurrent_mode,
)

ENV_ID = "CartPole-v1"
OBSERVED = [0, 2]
"""The features of CartPole's observation the policy sees: cart position and pole angle."""
OBSERVATION_SCALE = [2.0, 20.0]
"""Multiplies the seen features to order 1 (the angle stays within +-0.21 rad): the LSTM
learns to tell their small step-to-step changes, the velocities, much faster."""
RETURN_THRESHOLD = 450.0
"""The mean return over 20 seeded deterministic episodes that the shipped weights reach, and
that the memoryless baseline trained by the same recipe does not."""
WEIGHTS = Path(__file__).resolve().parent / "weights" / "cartpole_masked_lstm.pt"
EXPERT_FILE = Path(__file__).resolve().parent / "cartpole_qvalue.py"
"""The full-state expert whose greedy actions label the learner's states."""
STATE = "state"
"""Training only: the full 4-dim observation, kept for the expert beside the masked one."""


def _import_recipe(path: Path) -> ModuleType:
    """Import a sibling recipe (``models/`` is no package), once per process."""
    name = f"_cartpole_masked_lstm_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # registered before running: dataclasses look it up
        spec.loader.exec_module(module)
    return sys.modules[name]


cartpole_qvalue = _import_recipe(EXPERT_FILE)  # the expert; builds nothing on import
evaluate = cartpole_qvalue.evaluate
"""``evaluate(policy, env, *, episodes=20)``: the expert recipe's mean return of seeded
deterministic episodes (episode ``i`` from seed ``EVAL_SEED + i``, never a training seed)."""
save_weights = cartpole_qvalue.save_weights
"""``save_weights(state_dict, out)``: the expert recipe's atomic write of a ``state_dict``."""


# -- hyper-parameters ------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """The hyper-parameters of the recipe; the defaults reproduce the shipped weights."""

    seed: int = 1
    """Seeds torch (initial weights, expert/learner mixing, batches) and the envs' resets."""
    total_steps: int = 48_000
    """Environment steps collected in all, over ``total_steps // (num_envs * rollout_length)``
    DAgger rounds (one round of shorter rollouts when the budget is below one round's)."""
    num_envs: int = 8
    """Envs stepped side by side (a ``SerialEnv``): trajectories per round."""
    rollout_length: int = 500
    """Steps per env and round; every round starts from fresh resets (500: CartPole's cap)."""
    hidden_size: int = 32
    """Width of the LSTM's output and of each of its two states."""
    num_cells: tuple[int, ...] = (64,)
    """Hidden widths of the head from the LSTM's output to the action values (ReLU)."""
    memoryless: bool = False
    """Train the baseline instead: an MLP on the masked observation, no LSTM."""
    memoryless_cells: tuple[int, ...] = (64, 64)
    """Hidden widths of the memoryless baseline (a parameter count near the LSTM policy's)."""
    expert_decay: float = 0.5
    """The expert acts with probability ``expert_decay ** round`` (1 in round 0: cloning)."""
    eps: float = 0.05
    """Probability of a random action while collecting: states the expert would never visit
    get labelled too."""
    updates_per_round: int = 60
    """Gradient steps on the aggregated data set after each round."""
    batch_size: int = 16
    """Episodes per gradient step (padded to the longest: ``[batch_size, T]``)."""
    learning_rate: float = 3e-3
    """Adam's initial step size."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 over all updates: the last rounds settle the policy."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    num_threads: int = 1
    """Torch threads while training (1: reproducible, and fair to a shared machine)."""
    log_interval: int = 2
    """Rounds between two progress lines."""


# -- environment and policy ------------------------------------------------------------------
def make_lstm(config: Config | None = None, *, device: str | None = None) -> LSTMModule:
    """The recurrent layer: masked ``"observation"`` -> ``"embed"``, its state in the root."""
    config = config or Config()
    return LSTMModule(
        input_size=len(OBSERVED), hidden_size=config.hidden_size, in_key="observation",
        out_key="embed", device=device,
    )  # fmt: skip


def make_env(num_envs: int | None = None, *, keep_state: bool = False) -> EnvBase:
    """CartPole-v1 with the velocities masked (and scaled), ``is_init``, the LSTM's states.

    Args:
        num_envs: None for one env (deployment, evaluation); ``n`` for a ``SerialEnv`` of
            ``n`` envs, batch size ``[n]`` (training).
        keep_state: keep the full observation under ``"state"`` too (training: the
            expert's input).
    """
    base = GymEnv(ENV_ID) if num_envs is None else SerialEnv(num_envs, lambda: GymEnv(ENV_ID))
    keep = [IndexSelect([0, 1, 2, 3], out_keys=[STATE])] if keep_state else []  # a copy
    primer = make_lstm(device="meta").make_tensordict_primer()  # meta: no weights drawn
    mask = [IndexSelect(OBSERVED), ObservationNorm(loc=0.0, scale=torch.tensor(OBSERVATION_SCALE))]
    return TransformedEnv(base, Compose(*keep, *mask, InitTracker(), primer))


def build_policy(env: EnvBase, config: Config | None = None) -> TensorDictSequential:
    """The policy with freshly initialised weights (call ``torch.manual_seed`` first)."""
    config = config or Config()
    action_spec = env.single_action_spec  # one row's: the training env is batched
    n_actions = action_spec.shape[-1]
    if config.memoryless:
        memory = []
        head = MLP(len(OBSERVED), n_actions, num_cells=list(config.memoryless_cells),
                   activation_class=nn.ReLU)  # fmt: skip
        head = TensorDictModule(head, in_keys=["observation"], out_keys=["action_value"])
    else:
        memory = [make_lstm(config)]
        head = MLP(config.hidden_size, n_actions, num_cells=list(config.num_cells),
                   activation_class=nn.ReLU)  # fmt: skip
        head = TensorDictModule(head, in_keys=["embed"], out_keys=["action_value"])
    return TensorDictSequential(
        *memory,
        head,
        QValueModule(action_space=action_spec),
        EGreedyModule(action_spec, eps_init=config.eps, eps_end=config.eps),
    )


def make_policy(env: EnvBase, weights: str | os.PathLike[str] = WEIGHTS) -> TensorDictModuleBase:
    """The trained policy: :func:`build_policy` with the shipped weights loaded."""
    policy = build_policy(env)
    policy.load_state_dict(torch.load(weights, weights_only=True))
    return policy


# -- the expert ------------------------------------------------------------------------------
def load_expert() -> TensorDictModuleBase:
    """The shipped full-state DQN of ``models/cartpole_qvalue.py``, weights loaded."""
    return cartpole_qvalue.make_policy(cartpole_qvalue.make_env())


def expert_actions(expert: TensorDictModuleBase, state: torch.Tensor) -> torch.Tensor:
    """The expert's greedy one-hot action for each full observation ``state`` ``[*B, 4]``."""
    td = TensorDict({"observation": state}, batch_size=state.shape[:-1])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        return expert(td)["action"]


# -- training --------------------------------------------------------------------------------
def collect(
    env: EnvBase, policy: TensorDictModuleBase, expert: TensorDictModuleBase, *,
    steps: int, expert_probability: float,
) -> TensorDictBase:  # fmt: skip
    """Roll out a mix of expert and learner from fresh resets; label each state.

    Returns ``[num_envs, steps]`` trajectories: what the policy reads (``"observation"``, the
    LSTM's states, ``"is_init"``) and ``"expert_action"``, the expert's action index (int64).
    """
    td, trajectory = env.reset(), []
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        for _ in range(steps):
            td = policy(td)  # the learner's LSTM state follows what it sees, whoever acts
            label = expert_actions(expert, td[STATE])
            expert_acts = torch.rand(*env.batch_size, 1) < expert_probability
            td["action"] = torch.where(expert_acts, label, td["action"])
            keys = dict.fromkeys([*policy.in_keys, "is_init"])  # is_init: episodes, always
            trajectory.append(td.select(*keys).set("expert_action", label.argmax(-1)).clone())
            _, td = env.step_and_maybe_reset(td)
    return torch.stack(trajectory, dim=-1)


def split_episodes(trajectories: TensorDictBase) -> list[TensorDictBase]:
    """Cut ``[n, T]`` trajectories where ``is_init`` is True: one ``[length]`` td per episode.

    (Batches of whole episodes, padded to the longest, keep recurrent mode cheap: its cost
    grows with ``sequences * longest sequence``, and a row of many short failures next to a
    row of one long success would make that ``~n * T / 10 * T``.)
    """
    episodes = []
    for row in trajectories.unbind(0):
        starts = row["is_init"].squeeze(-1).nonzero().squeeze(-1).tolist()
        for begin, end in zip(starts, [*starts[1:], row.shape[0]]):
            episodes.append(row[begin:end])
    return episodes


def imitation_loss(policy: TensorDictSequential, batch: TensorDictBase) -> torch.Tensor:
    """Cross-entropy between the action values (as logits) and the expert's actions.

    ``batch`` is ``[B, T]`` padded episodes; ``("mask", "expert_action")`` is False on the
    padding (``pad_sequence`` writes one mask per entry).
    """
    value_net = policy[:-2]  # the LSTM (if any) and the head
    with set_recurrent_mode(True):
        logits = value_net(batch.clone())["action_value"]
    loss = nn.functional.cross_entropy(
        logits.flatten(0, -2), batch["expert_action"].flatten(), reduction="none"
    )
    mask = batch["mask", "expert_action"].flatten()
    return (loss * mask).sum() / mask.sum()


def run_dagger(config: Config) -> TensorDictSequential:
    """Train the policy by DAgger and return it (exploration at ``config.eps``)."""
    torch.manual_seed(config.seed)
    env = make_env(config.num_envs, keep_state=True)
    env.set_seed(config.seed)
    policy = build_policy(env, config)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    expert = load_expert()
    eval_env = make_env()  # for the progress lines only

    start, episodes = time.perf_counter(), []
    rounds = max(1, config.total_steps // (config.num_envs * config.rollout_length))
    rollout_length = min(config.rollout_length, max(1, config.total_steps // config.num_envs))
    total_updates = rounds * config.updates_per_round
    for round_ in range(rounds):
        # Collect: the expert acts with a decaying probability; it labels every state.
        expert_probability = config.expert_decay**round_
        trajectories = collect(env, policy, expert, steps=rollout_length,
                               expert_probability=expert_probability)  # fmt: skip
        episodes += split_episodes(trajectories)
        lengths = torch.tensor([len(episode) for episode in episodes], dtype=torch.float)

        # Fit the learner to the expert's labels on everything collected so far: episodes
        # drawn in proportion to their length, i.e. every labelled state equally likely.
        for update in range(config.updates_per_round):
            if config.anneal_lr:
                fraction_done = (round_ * config.updates_per_round + update) / total_updates
                optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - fraction_done)
            index = torch.multinomial(lengths, config.batch_size, replacement=True)
            batch = pad_sequence([episodes[i] for i in index.tolist()], return_mask="mask")
            loss = imitation_loss(policy, batch)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()

        if (round_ + 1) % config.log_interval == 0 or round_ + 1 == rounds:
            print(
                f"round {round_ + 1:>3}/{rounds}  expert {expert_probability:.3f}  "
                f"episodes {len(episodes):>5}  loss {loss.item():.4f}  "
                f"greedy return(5) {evaluate(policy, eval_env, episodes=5):6.1f}  "
                f"{time.perf_counter() - start:5.0f}s",
                flush=True,
            )
    env.close()
    eval_env.close()
    return policy


def train_policy(config: Config) -> TensorDictSequential:
    """Run the recipe with ``config`` on ``config.num_threads`` threads; return the policy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        return run_dagger(config)
    finally:
        torch.set_num_threads(threads)


def train(config: Config, out: str | os.PathLike[str] = WEIGHTS) -> Path:
    """Run the recipe with ``config`` and write the policy's ``state_dict`` to ``out``."""
    return save_weights(train_policy(config).state_dict(), out)


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
    eval_parser.add_argument(
        "--memoryless", action="store_true",
        help="train the memoryless baseline with the default config and evaluate it instead",
    )  # fmt: skip
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.command == "train":
        config = replace(Config(), total_steps=args.total_steps, seed=args.seed)
        out = train(config, out=args.out)
        print(f"wrote {out} after {time.perf_counter() - start:.0f}s")
        return
    env = make_env()
    if args.memoryless:
        policy, what = train_policy(replace(Config(), memoryless=True)), "memoryless baseline"
    else:
        policy, what = make_policy(env, args.weights), str(args.weights)
    mean = evaluate(policy, env)
    print(
        f"{what}: mean return over 20 episodes: {mean:.1f} (threshold {RETURN_THRESHOLD}, "
        f"{time.perf_counter() - start:.0f}s)"
    )


if __name__ == "__main__":
    main()
