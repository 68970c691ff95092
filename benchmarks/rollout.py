"""Rollout benchmark (issue 7): ``env.rollout`` against the raw gymnasium loops it replaces.

Each scenario times a raw loop (gymnasium + onnxruntime / TorchScript / eager torch on numpy,
auto-resetting) and the rlpol rollout producing the full TED tensordict, interleaved in this
process, and prints the ratio of the medians (per env-step) against the issue's targets:

1. ONNX artifact in ``GymEnv("CartPole-v1")``: <= 1.5x the raw gymnasium + onnxruntime loop;
2. TorchScript artifact: <= 1.5x the raw gymnasium + TorchScript loop;
3. eager TensorDict policies (Actor(MLP), QValueActor) under ``torch.no_grad()``: <= 2.5x
   the raw eager torch loop;
4. SerialEnv / ParallelEnv of 16 CartPole-v1 with the ONNX artifact: <= 1.5x
   ``gymnasium.vector.SyncVectorEnv`` / ``AsyncVectorEnv`` + onnxruntime, per env-step;
5. a recurrent (LSTM) ONNX artifact in ``TransformedEnv(GymEnv("CartPole-v1"),
   Compose(InitTracker(), primer))``: <= 1.3x the raw gymnasium + onnxruntime loop that
   threads the state by the metadata's names (``--only recurrent``);
6. a pixel policy, TorchRL's export tutorial (``models/pong_dqn.py``: ALE Pong, image
   transforms and ``CatFrames(4)`` folded into the ONNX artifact, the Nature DQN): <= 1.2x
   the raw loop of ALE screens, the same preprocessing in numpy and onnxruntime on the
   network; for reference, the raw loop feeding the screens to the same artifact (the stack
   threaded by hand), and the eager TorchRL-style rollout (``--only pixels``).

Policies are 64x64 tanh MLPs; artifacts are exported to a temporary directory. Run from the
repository root::

    python benchmarks/rollout.py                 # all scenarios, about 1-2 minutes
    python benchmarks/rollout.py --only onnx --repeats 9
"""

from __future__ import annotations

import os

# one BLAS thread, as torch and onnxruntime get one: the numpy preprocessing loop's matmuls
# must not spin threads against the loop they are compared with (set before numpy loads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import torch
from _harness import (
    Result,
    deterministic_actor,
    measure,
    q_value_policy,
    report,
    timed,
)

from rlpol import (
    Compose,
    EGreedyModule,
    GymEnv,
    InitTracker,
    ParallelEnv,
    SerialEnv,
    TensorDictSequential,
    TransformedEnv,
    export_policy,
    load_policy,
    load_policy_file,
)
from rlpol.runtime import make_artifact_env
from rlpol.testing import recurrent_qvalue
from rlpol.toolkit.envs.fast_rollout import use_fast_rollout

CARTPOLE = "CartPole-v1"
PENDULUM = "Pendulum-v1"
BATCH = 16
MODELS = Path(__file__).resolve().parents[1] / "models"


def onnx_session(path: Path) -> ort.InferenceSession:
    """A plain onnxruntime session, one thread (as a hand-written loop would make it)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rlpol_rollout(env, policy, *, no_grad: bool = False):
    def run(steps: int) -> float:
        if no_grad:
            with torch.no_grad():
                return timed(lambda: env.rollout(steps, policy, break_when_any_done=False))
        return timed(lambda: env.rollout(steps, policy, break_when_any_done=False))

    return run


def generic_rollout(env, policy, *, no_grad: bool = False):
    fast = rlpol_rollout(env, policy, no_grad=no_grad)

    def run(steps: int) -> float:
        with use_fast_rollout(False):
            return fast(steps)

    return run


def raw_single(env_id: str, act):
    """The raw loop: ``act(obs) -> gym action`` in one auto-resetting gymnasium env."""
    env = gym.make(env_id)
    state = {"obs": env.reset(seed=0)[0]}

    def run(steps: int) -> float:
        def loop() -> None:
            obs = state["obs"]
            for _ in range(steps):
                obs, _, terminated, truncated, _ = env.step(act(obs))
                if terminated or truncated:
                    obs, _ = env.reset()
            state["obs"] = obs

        return timed(loop)

    return run


def raw_vector(vector_env: gym.vector.VectorEnv, act):
    state = {"obs": vector_env.reset(seed=0)[0]}

    def run(steps: int) -> float:
        def loop() -> None:
            obs = state["obs"]
            for _ in range(steps):
                obs, _, _, _, _ = vector_env.step(act(obs))
            state["obs"] = obs

        return timed(loop)

    return run


def raw_recurrent(
    env_id: str,
    session: ort.InferenceSession,
    states: list,
    *,
    observation: str = "observation",
    to_gym=lambda action: int(action.argmax()),
    make_kwargs: dict | None = None,
    store: bool = False,
) -> object:
    """The raw loop of a stateful artifact: the state threaded by hand, by the metadata's
    state pairs (input, output, shape, initial, reset input), and reset at episode ends.

    ``observation`` names the graph input the gymnasium observation feeds; ``to_gym`` turns
    the action row (one-hot by default) into gymnasium's action. With ``store``, the loop also
    keeps what a TED rollout holds of the big entries: the observation at ``t`` and under
    ``"next"``, each state at ``t`` and under ``"next"``, in arrays allocated per run."""
    env = gym.make(env_id, **(make_kwargs or {}))
    outputs = [output.name for output in session.get_outputs()]
    pairs = [(s.input, outputs.index(s.output)) for s in states]
    initial = {s.input: np.full((1, *s.shape), s.initial, np.float32) for s in states}
    reset_input = states[0].reset_input
    action = outputs.index("action")
    flags = {True: np.ones((1, 1), bool), False: np.zeros((1, 1), bool)}
    carried = {"obs": env.reset(seed=0)[0], "state": dict(initial), "is_init": flags[True]}

    def run(steps: int) -> float:
        def loop() -> None:
            obs, state, is_init = carried["obs"], carried["state"], carried["is_init"]
            if store:
                kept = [np.empty((steps, *obs.shape), obs.dtype) for _ in range(2)]
                kept += [np.empty((steps, *a.shape), a.dtype) for a in initial.values() for _ in "rn"]
            for t in range(steps):
                feed = {observation: obs[None], reset_input: is_init, **state}
                out = session.run(None, feed)
                if store:
                    kept[0][t] = obs
                    for i, (name, index) in enumerate(pairs):
                        kept[2 + 2 * i][t], kept[3 + 2 * i][t] = state[name], out[index]
                state = {name: out[index] for name, index in pairs}
                obs, _, terminated, truncated, _ = env.step(to_gym(out[action][0]))
                if store:
                    kept[1][t] = obs
                done = terminated or truncated
                is_init = flags[done]
                if done:
                    obs, _ = env.reset()
                    state = dict(initial)
            carried.update(obs=obs, state=state, is_init=is_init)

        return timed(loop)

    return run


def recurrent_scenarios(directory: Path, steps: int, repeats: int) -> list[Result]:
    """5.: the LSTM artifact in its env (InitTracker + primer) against the raw loop."""
    lstm = recurrent_qvalue("lstm", 1)
    env = TransformedEnv(
        GymEnv(CARTPOLE), Compose(InitTracker(), lstm[0].make_tensordict_primer())
    )
    path = export_policy(lstm, directory / "lstm.onnx", env=env, exploration="deterministic")
    policy = load_policy(path)
    raw = raw_recurrent(CARTPOLE, onnx_session(path), list(policy.metadata.states))
    name = "recurrent onnx (LSTM), TransformedEnv(CartPole-v1, InitTracker + primer)"
    return [
        measure(
            f"5. {name}", raw, rlpol_rollout(env, policy), steps=steps, repeats=repeats,
            target=1.3, note="vs raw loop threading the state",
        ),
        measure(
            f"{name}, generic path", raw, generic_rollout(env, policy), steps=steps // 4,
            repeats=max(3, repeats // 2), target=None, note="reference",
        ),
    ]  # fmt: skip


def resize_matrix(size: int, out: int) -> np.ndarray:
    """``[out, size]``: bilinear, antialiased resizing of one axis as a matrix (the torch op
    ``Resize`` runs is separable: one such matrix per axis)."""
    identity = torch.eye(size).reshape(size, 1, size, 1)
    resized = torch.nn.functional.interpolate(
        identity, size=(out, 1), mode="bilinear", align_corners=False, antialias=True
    )
    return np.ascontiguousarray(resized.reshape(size, out).T.numpy())


def raw_numpy_preprocessing(env_id: str, session: ort.InferenceSession, frames: int) -> object:
    """The hand-written loop ``rlpol`` replaces: ALE screens, the tutorial's preprocessing in
    numpy (``ToTensorImage``, ``Resize(84)``, ``GrayScale``, a stack of ``frames``), and
    onnxruntime on the network alone (an artifact exported without folding)."""
    env = gym.make(env_id)
    rows, columns = resize_matrix(210, 84), resize_matrix(160, 84).T
    luma = np.array([0.2989, 0.587, 0.114], np.float32)
    name = session.get_inputs()[0].name

    def frame(screen: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(screen.transpose(2, 0, 1), np.float32) / 255  # [3, 210, 160]
        resized = rows @ image @ columns  # [3, 84, 84]
        return np.tensordot(luma, resized, axes=1)[None]  # [1, 84, 84]

    carried = {"stack": np.repeat(frame(env.reset(seed=0)[0]), frames, axis=0)}

    def run(steps: int) -> float:
        def loop() -> None:
            stack = carried["stack"]
            for _ in range(steps):
                (action,) = session.run(["action"], {name: stack[None]})
                screen, _, terminated, truncated, _ = env.step(int(action[0]))
                if terminated or truncated:
                    stack = np.repeat(frame(env.reset()[0]), frames, axis=0)
                else:
                    stack = np.concatenate([stack[1:], frame(screen)])
            carried["stack"] = stack

        return timed(loop)

    return run


def pixel_scenarios(directory: Path, steps: int, repeats: int) -> list[Result]:
    """6.: ``models/pong_dqn.py`` (TorchRL's export tutorial: ALE Pong, image transforms,
    CatFrames(4), the Nature DQN): its ONNX artifact, folding the preprocessing, against the
    raw loop that preprocesses in numpy; for reference, against the raw loop feeding the
    screens to the same artifact with the stack threaded by hand, and the eager TorchRL-style
    rollout (the transforms in the env, the policy in torch)."""
    pong = load_policy_file(MODELS / "pong_dqn.py")
    path = export_policy(pong.policy, directory / "pong.onnx", env=pong.env)
    network = export_policy(
        pong.policy, directory / "pong_network.onnx", env=pong.env, fold_transforms=False
    )
    policy = load_policy(path)
    meta = policy.metadata
    numpy_loop = raw_numpy_preprocessing(meta.env_id, onnx_session(network), frames=4)
    threaded = raw_recurrent(
        meta.env_id, onnx_session(path), list(meta.states), observation="pixels", to_gym=int
    )
    artifact_env = make_artifact_env(meta)
    name = "pixels onnx (Nature DQN), ALE/Pong-v5, folded preprocessing + CatFrames(4)"
    ours = rlpol_rollout(artifact_env, policy)
    return [
        measure(
            f"6. {name}", numpy_loop, ours, steps=steps // 4, repeats=repeats, target=1.2,
            note="vs raw ALE loop, preprocessing in numpy, onnxruntime on the network",
        ),
        measure(
            name, threaded, ours, steps=steps // 4, repeats=repeats, target=None,
            note="reference: vs raw ALE loop into the same artifact, stack threaded by hand",
        ),
        measure(
            name, raw_recurrent(
                meta.env_id, onnx_session(path), list(meta.states), observation="pixels",
                to_gym=int, store=True,
            ), ours, steps=steps // 4, repeats=repeats, target=None,
            note="reference: vs that raw loop also keeping the TED's screens and stacks",
        ),
        measure(
            "pixels, eager TorchRL-style rollout (transforms in the env)", numpy_loop,
            rlpol_rollout(pong.env, pong.policy, no_grad=True), steps=steps // 8,
            repeats=max(3, repeats // 2), target=None, note="reference",
        ),
    ]  # fmt: skip


def scenarios(directory: Path, steps: int, repeats: int, only: str | None) -> list[Result]:
    results: list[Result] = []

    def want(name: str) -> bool:
        return only is None or only in name

    cartpole = GymEnv(CARTPOLE)
    _, q_actor = q_value_policy(cartpole)
    onnx_path = export_policy(q_actor, directory / "cartpole.onnx", env=cartpole)
    ts_path = export_policy(q_actor, directory / "cartpole.pt", env=cartpole)

    if want("onnx"):
        session = onnx_session(onnx_path)

        def onnx_act(obs: np.ndarray) -> int:
            return int(np.argmax(session.run(None, {"observation": obs[None]})[0]))

        raw = raw_single(CARTPOLE, onnx_act)
        policy = load_policy(onnx_path)
        results.append(measure(
            "1. onnx, GymEnv(CartPole-v1)", raw, rlpol_rollout(cartpole, policy),
            steps=steps, repeats=repeats, target=1.5,
        ))  # fmt: skip
        results.append(measure(
            "onnx, GymEnv(CartPole-v1), generic path", raw, generic_rollout(cartpole, policy),
            steps=steps // 4, repeats=max(3, repeats // 2), target=None, note="reference",
        ))  # fmt: skip

        greedy = TensorDictSequential(
            q_actor, EGreedyModule(cartpole.action_spec, eps_init=0.1)
        ).eval()
        random_path = export_policy(
            greedy, directory / "egreedy.onnx", env=cartpole, exploration="random"
        )
        random_policy = load_policy(random_path)
        random_session = onnx_session(random_path)
        metadata = random_policy.metadata
        parameters = {p.name: np.array(p.value, np.float32) for p in metadata.parameters}

        def random_act(obs: np.ndarray) -> int:
            feed = {"observation": obs[None], **parameters}
            for noise in metadata.noise:
                feed[noise.name] = torch.rand((1, *noise.shape)).numpy()
            return int(np.argmax(random_session.run(None, feed)[0]))

        results.append(measure(
            "onnx e-greedy (random), GymEnv(CartPole-v1)", raw_single(CARTPOLE, random_act),
            rlpol_rollout(cartpole, random_policy), steps=steps, repeats=repeats,
            target=1.5, note="noise from torch's generator in both",
        ))  # fmt: skip

    if want("torchscript"):
        module = torch.jit.load(str(ts_path))
        module.eval()

        def ts_act(obs: np.ndarray) -> int:
            with torch.inference_mode():
                return int(module(torch.from_numpy(obs)[None])[0].argmax())

        results.append(measure(
            "2. torchscript, GymEnv(CartPole-v1)", raw_single(CARTPOLE, ts_act),
            rlpol_rollout(cartpole, load_policy(ts_path, trust_code=True)), steps=steps, repeats=repeats,
            target=1.5,
        ))  # fmt: skip

    if want("eager"):
        mlp, actor = q_value_policy(cartpole)

        def q_act(obs: np.ndarray) -> int:
            with torch.no_grad():
                return int(mlp(torch.from_numpy(obs)[None]).argmax())

        results.append(measure(
            "3. eager QValueActor(MLP), GymEnv(CartPole-v1)", raw_single(CARTPOLE, q_act),
            rlpol_rollout(cartpole, actor, no_grad=True), steps=steps // 2, repeats=repeats,
            target=2.5,
        ))  # fmt: skip
        results.append(measure(
            "eager QValueActor(MLP), GymEnv(CartPole-v1), generic path",
            raw_single(CARTPOLE, q_act), generic_rollout(cartpole, actor, no_grad=True),
            steps=steps // 4, repeats=max(3, repeats // 2), target=None, note="reference",
        ))  # fmt: skip
        pendulum = GymEnv(PENDULUM)
        mlp, actor = deterministic_actor(pendulum)

        def actor_act(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return mlp(torch.from_numpy(obs)[None])[0].numpy()

        results.append(measure(
            "3. eager Actor(MLP), GymEnv(Pendulum-v1)", raw_single(PENDULUM, actor_act),
            rlpol_rollout(pendulum, actor, no_grad=True), steps=steps // 2, repeats=repeats,
            target=2.5,
        ))  # fmt: skip

    if want("serial") or want("parallel"):
        session = onnx_session(onnx_path)

        def batch_act(obs: np.ndarray) -> np.ndarray:
            return np.argmax(session.run(None, {"observation": obs})[0], -1)

        makers = [lambda: gym.make(CARTPOLE)] * BATCH
        policy = load_policy(onnx_path)
        if want("serial"):
            raw_env = gym.vector.SyncVectorEnv(makers)
            env = SerialEnv(BATCH, lambda: GymEnv(CARTPOLE))
            results.append(measure(
                f"4. onnx, SerialEnv({BATCH}) CartPole-v1", raw_vector(raw_env, batch_act),
                rlpol_rollout(env, policy), steps=steps // 4, repeats=repeats, target=1.5,
                per=BATCH, note="per env-step, vs SyncVectorEnv",
            ))  # fmt: skip
            env.close()
            raw_env.close()
        if want("parallel"):
            raw_env = gym.vector.AsyncVectorEnv(makers)
            env = ParallelEnv(BATCH, lambda: GymEnv(CARTPOLE))
            results.append(measure(
                f"4. onnx, ParallelEnv({BATCH}) CartPole-v1", raw_vector(raw_env, batch_act),
                rlpol_rollout(env, policy), steps=steps // 8, repeats=repeats, target=1.5,
                per=BATCH, note="per env-step, vs AsyncVectorEnv",
            ))  # fmt: skip
            raw_env.close()
            # rlpol's batched envs autoreset in the same step (the TED needs the final
            # observation), which gymnasium pays for in its workers and pipes
            raw_env = gym.vector.AsyncVectorEnv(
                makers, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
            )
            results.append(measure(
                f"onnx, ParallelEnv({BATCH}) CartPole-v1", raw_vector(raw_env, batch_act),
                rlpol_rollout(env, policy), steps=steps // 8, repeats=repeats, target=None,
                per=BATCH, note="reference: vs AsyncVectorEnv in SAME_STEP autoreset mode",
            ))  # fmt: skip
            env.close()
            raw_env.close()
    if want("recurrent"):
        results += recurrent_scenarios(directory, steps, repeats)
    if want("pixels"):
        results += pixel_scenarios(directory, steps, repeats)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per side")
    parser.add_argument(
        "--only",
        default=None,
        help="run the scenarios whose group matches (onnx, torchscript, eager, serial, parallel, "
        "recurrent, pixels)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        results = scenarios(Path(directory), args.steps, args.repeats, args.only)
    return report(
        results, title="rollout: rlpol vs raw loops (medians, same process)", repeats=args.repeats
    )


if __name__ == "__main__":
    raise SystemExit(main())
