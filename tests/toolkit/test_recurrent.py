"""Recurrent modules (LSTMModule, GRUModule), set_recurrent_mode and TensorDictPrimer."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from rlpol import Compose, GymEnv, InitTracker, InputMismatchError, SerialEnv, TransformedEnv
from rlpol.toolkit.envs import TensorDictPrimer
from rlpol.toolkit.modules import (
    MLP,
    GRUModule,
    LSTMModule,
    QValueModule,
    recurrent_mode,
    set_recurrent_mode,
)
from rlpol.toolkit.specs import Composite, Unbounded

MODULES = [LSTMModule, GRUModule]
LAYERS = [1, 2]
IN, HIDDEN = 3, 5


def _module(cls, num_layers: int = 1) -> LSTMModule | GRUModule:
    return cls(input_size=IN, hidden_size=HIDDEN, num_layers=num_layers)


def _states(module, *batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(*batch, *module.state_shape) for _ in module.state_keys)


def _nn_step(module, x, states):
    """``nn.LSTM`` / ``nn.GRU`` on one step: x [N, F], states [N, L, H] each."""
    hx = tuple(s.transpose(0, 1).contiguous() for s in states)
    y, final = module.rnn(x.unsqueeze(1), hx if len(hx) > 1 else hx[0])
    final = final if isinstance(final, tuple) else (final,)
    return y.squeeze(1), tuple(f.transpose(0, 1) for f in final)


def _td(module, x, states, is_init) -> TensorDict:
    entries = dict(zip(module.state_keys, states))
    return TensorDict(
        {"observation": x, **entries, "is_init": is_init}, batch_size=is_init.shape[:-1]
    )


# -- step mode equals nn.LSTM / nn.GRU ------------------------------------------------------
@pytest.mark.parametrize("num_layers", LAYERS)
@pytest.mark.parametrize("cls", MODULES)
def test_step_mode_equals_torch_rnn(cls, num_layers):
    module = _module(cls, num_layers)
    x, states = torch.randn(6, IN), _states(module, 6)
    is_init = torch.tensor([True, False, False, True, False, False]).unsqueeze(-1)
    td = module(_td(module, x, states, is_init))
    zeroed = tuple(torch.where(is_init.unsqueeze(-1), 0.0, s) for s in states)
    with torch.no_grad():
        y, final = _nn_step(module, x, zeroed)
    torch.testing.assert_close(td["embed"], y, atol=1e-6, rtol=0)
    for key, expected in zip(module.out_keys[1:], final):
        torch.testing.assert_close(td[key], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls", MODULES)
def test_step_mode_takes_any_batch_shape(cls):
    module = _module(cls, 2)
    x, states = torch.randn(2, 3, IN), _states(module, 2, 3)
    is_init = torch.zeros(2, 3, 1, dtype=torch.bool)
    nested = module(_td(module, x, states, is_init))
    flat = module(_td(module, x.reshape(6, IN), [s.reshape(6, 2, HIDDEN) for s in states],
                      is_init.reshape(6, 1)))  # fmt: skip
    torch.testing.assert_close(nested["embed"].reshape(6, HIDDEN), flat["embed"])
    single = module(_td(module, x[0, 0], [s[0, 0] for s in states], is_init[0, 0]))
    torch.testing.assert_close(single["embed"], flat["embed"][0])


def test_wrapped_lstm_keeps_its_state_dict():
    lstm = nn.LSTM(IN, HIDDEN, num_layers=2, batch_first=True)
    module = LSTMModule(lstm=lstm, in_keys=["observation", "h", "c"],
                        out_keys=["embed", ("next", "h"), ("next", "c")])  # fmt: skip
    assert module.lstm is lstm and module.rnn is lstm
    assert set(module.state_dict()) == {f"lstm.{key}" for key in lstm.state_dict()}
    assert module.in_keys == ["observation", "h", "c", "is_init"]
    assert GRUModule(IN, HIDDEN).in_keys == ["observation", "recurrent_state", "is_init"]
    assert GRUModule(IN, HIDDEN).out_keys == ["embed", ("next", "recurrent_state")]


def test_no_bias_and_dropout_follow_torch():
    module = GRUModule(IN, HIDDEN, 2, bias=False, dropout=0.5)
    module.eval()  # dropout is off in eval mode, as in nn.GRU
    x, states = torch.randn(4, IN), _states(module, 4)
    td = module(_td(module, x, states, torch.zeros(4, 1, dtype=torch.bool)))
    with torch.no_grad():
        y, _ = _nn_step(module, x, states)
    torch.testing.assert_close(td["embed"], y, atol=1e-6, rtol=0)


# -- recurrent mode equals threaded step calls ----------------------------------------------
@pytest.mark.parametrize("num_layers", LAYERS)
@pytest.mark.parametrize("cls", MODULES)
def test_recurrent_mode_equals_step_calls(cls, num_layers):
    module = _module(cls, num_layers)
    batch, steps = 3, 8
    x = torch.randn(batch, steps, IN)
    is_init = torch.zeros(batch, steps, 1, dtype=torch.bool)
    is_init[0, 0] = is_init[0, 3] = is_init[1, 5] = is_init[1, 6] = is_init[2, 7] = True
    first_states = _states(module, batch)  # row 1 and 2 start mid-episode, from these
    states = [s.unsqueeze(1).expand(batch, steps, *module.state_shape).clone()
              for s in first_states]  # fmt: skip
    with set_recurrent_mode(True):
        whole = module(_td(module, x, states, is_init))
    assert not module.recurrent_mode
    running, outputs, next_states = first_states, [], []
    for t in range(steps):
        td = module(_td(module, x[:, t], running, is_init[:, t]))
        outputs.append(td["embed"])
        running = tuple(td[key] for key in module.out_keys[1:])
        next_states.append(running)
    torch.testing.assert_close(whole["embed"], torch.stack(outputs, 1), atol=1e-6, rtol=0)
    # ("next", state) holds each sequence's final state at its last step, zeros elsewhere
    ends = torch.cat([is_init[:, 1:], torch.ones(batch, 1, 1, dtype=torch.bool)], 1)
    for k, key in enumerate(module.out_keys[1:]):
        stepped = torch.stack([s[k] for s in next_states], 1)
        expected = torch.where(ends.unsqueeze(-1), stepped, 0.0)
        torch.testing.assert_close(whole[key], expected, atol=1e-6, rtol=0)


def test_default_recurrent_mode_and_the_context_manager():
    module = GRUModule(IN, HIDDEN, default_recurrent_mode=True)
    assert module.recurrent_mode and recurrent_mode() is None
    with set_recurrent_mode(False):
        assert not module.recurrent_mode
        with set_recurrent_mode(None):
            assert module.recurrent_mode
    with pytest.raises(TypeError, match=r"True \(trajectories\), False"):
        with set_recurrent_mode("recurrent"):
            pass


# -- rollouts: the state goes from ("next", ...) at t to the root at t + 1 -----------------
def _recurrent_policy(env):
    lstm = LSTMModule(input_size=4, hidden_size=8, num_layers=2)
    head = TensorDictModule(MLP(8, 2, num_cells=[16]), in_keys=["embed"], out_keys=["action_value"])
    return lstm, TensorDictSequential(lstm, head, QValueModule(action_space=env.action_spec))


def test_rollout_threads_the_state_and_resets_it():
    base = GymEnv("CartPole-v1")
    lstm = LSTMModule(input_size=4, hidden_size=8, num_layers=2)
    env = TransformedEnv(base, Compose(InitTracker(), lstm.make_tensordict_primer()))
    head = TensorDictModule(MLP(8, 2, num_cells=[16]), in_keys=["embed"], out_keys=["action_value"])
    policy = TensorDictSequential(lstm, head, QValueModule(action_space=env.action_spec))
    env.set_seed(0)
    with torch.no_grad():
        rollout = env.rollout(80, policy, break_when_any_done=False)
    assert rollout.shape == (80,)
    is_init = rollout["is_init"].squeeze(-1)
    assert is_init[0] and is_init[1:].any(), "CartPole should reset within 80 steps"
    for key in lstm.state_keys:
        written, read = rollout["next", key], rollout[key]
        # what the module wrote at t is the root's state at t + 1, except after a reset
        carried = torch.where(is_init[1:, None, None], 0.0, written[:-1])
        torch.testing.assert_close(read[1:], carried, atol=0, rtol=0)
        assert (read[1:][~is_init[1:]].abs() > 0).any()
        assert (read[is_init] == 0).all()
    # and it is what the module computes from that root
    with torch.no_grad():
        again = lstm(rollout.exclude("next", "embed").clone())
    torch.testing.assert_close(
        again["next", "recurrent_state_h"], rollout["next", "recurrent_state_h"]
    )
    # training on the rollout in recurrent mode gives the rollout's outputs
    with torch.no_grad(), set_recurrent_mode(True):
        trained = lstm(rollout.exclude("next", "embed").clone())
    torch.testing.assert_close(trained["embed"], rollout["embed"], atol=1e-6, rtol=0)


def test_primer_on_a_batched_env():
    gru = GRUModule(input_size=4, hidden_size=6, num_layers=2)
    env = TransformedEnv(
        SerialEnv(2, lambda: GymEnv("CartPole-v1")),
        Compose(InitTracker(), gru.make_tensordict_primer()),
    )
    spec = env.observation_spec["recurrent_state"]
    assert spec.shape == (2, 2, 6) and spec.dtype == torch.float32
    root = env.reset()
    assert root["recurrent_state"].shape == (2, 2, 6) and (root["recurrent_state"] == 0).all()
    with torch.no_grad():
        rollout = env.rollout(30, TensorDictSequential(
            gru, TensorDictModule(nn.Linear(6, 2), in_keys=["embed"], out_keys=["action_value"]),
            QValueModule(action_space=env.action_spec),
        ), break_when_any_done=False)  # fmt: skip
    assert rollout.shape == (2, 30)
    torch.testing.assert_close(
        rollout["recurrent_state"][:, 1:][~rollout["is_init"][:, 1:].squeeze(-1)],
        rollout["next", "recurrent_state"][:, :-1][~rollout["is_init"][:, 1:].squeeze(-1)],
    )


def test_primer_arguments():
    composite = Composite(h=Unbounded((3, 1, 4)), shape=(3,))
    primer = TensorDictPrimer(composite, default_value={"h": 1.0}, c=Unbounded((1, 4)))
    env = TransformedEnv(GymEnv("Pendulum-v1"), primer)
    root = env.reset()
    assert root["h"].shape == (1, 4) and (root["h"] == 1).all()
    assert root["c"].shape == (1, 4) and (root["c"] == 0).all()
    assert env.observation_spec["h"].shape == (1, 4)
    with pytest.raises(ValueError, match="at least one primer"):
        TensorDictPrimer()
    with pytest.raises(
        ValueError, match=r"names \['x'\], which have no primer; the primers are \['h'\]"
    ):
        TensorDictPrimer(h=Unbounded((2,)), default_value={"x": 1.0})
    with pytest.raises(TypeError, match="one leaf spec per key"):
        TensorDictPrimer(h=torch.zeros(2))


def test_make_tensordict_primer_needs_next_keys():
    module = LSTMModule(IN, HIDDEN, in_keys=["observation", "h", "c"],
                        out_keys=["embed", ("next", "h"), "c_out"])  # fmt: skip
    with pytest.raises(ValueError, match=r"\('next', <in state key>\)"):
        module.make_tensordict_primer()


# -- bad input -------------------------------------------------------------------------------
def test_missing_is_init_or_state_says_how_to_fix():
    lstm = LSTMModule(input_size=4, hidden_size=8)
    no_init = TransformedEnv(GymEnv("CartPole-v1"), lstm.make_tensordict_primer())
    fix = r"append InitTracker\(\) and module.make_tensordict_primer\(\)"
    with pytest.raises(InputMismatchError, match=rf"needs 'is_init'.*{fix}"):
        lstm(no_init.reset())
    no_primer = TransformedEnv(GymEnv("CartPole-v1"), InitTracker())
    with pytest.raises(
        InputMismatchError, match=rf"'recurrent_state_h', 'recurrent_state_c'.*{fix}"
    ):
        lstm(no_primer.reset())
    with pytest.raises(InputMismatchError, match="needs the entry 'observation'"):
        lstm(TensorDict(batch_size=[]))


def test_wrong_shapes_name_expected_and_found():
    gru = GRUModule(IN, HIDDEN, num_layers=2)
    x, is_init = torch.randn(4, IN), torch.zeros(4, 1, dtype=torch.bool)
    with pytest.raises(
        InputMismatchError, match=r"'recurrent_state' of shape \[4, 2, 5\].*found \[4, 1, 5\]"
    ):
        gru(_td(gru, x, [torch.zeros(4, 1, HIDDEN)], is_init))
    with pytest.raises(
        InputMismatchError, match=r"'observation' of shape \[\*B, 3\], found \[4, 2\]"
    ):
        gru(_td(gru, torch.randn(4, 2), _states(gru, 4), is_init))
    with pytest.raises(InputMismatchError, match=r"'is_init' of dtype torch\.bool"):
        gru(_td(gru, x, _states(gru, 4), is_init.float()))
    with set_recurrent_mode(True), pytest.raises(InputMismatchError, match=r"\[\*B, T\]"):
        gru(_td(gru, x[0], _states(gru), is_init[0]))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_key or in_keys, not both"):
        LSTMModule(IN, HIDDEN, in_key="obs", in_keys=["obs", "h", "c"])
    with pytest.raises(ValueError, match="needs input_size and hidden_size"):
        GRUModule()
    with pytest.raises(ValueError, match="not both"):
        GRUModule(IN, HIDDEN, gru=nn.GRU(IN, HIDDEN, batch_first=True))
    with pytest.raises(ValueError, match="batch_first=True"):
        LSTMModule(lstm=nn.LSTM(IN, HIDDEN))
    with pytest.raises(TypeError, match=r"takes an nn\.GRU"):
        GRUModule(gru=nn.LSTM(IN, HIDDEN, batch_first=True))
    with pytest.raises(ValueError, match="2 state entries"):
        LSTMModule(IN, HIDDEN, in_keys=["observation", "h"])


# -- export: the step cell traces with a dynamic batch ---------------------------------------
class _LSTMStep(nn.Module):
    """The export half's shape of a recurrent step: named tensors in, tensors out."""

    def __init__(self, module: LSTMModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, observation, is_init, h, c):
        output, (h, c) = self.module.cell(observation, (h, c), is_init)
        return output, h, c


class _GRUStep(_LSTMStep):
    def forward(self, observation, is_init, h):
        output, (h,) = self.module.cell(observation, (h,), is_init)
        return output, h


STEPS = {LSTMModule: _LSTMStep, GRUModule: _GRUStep}


def _step_args(module, batch: int) -> tuple[torch.Tensor, ...]:
    is_init = torch.arange(batch).remainder(2).eq(0).unsqueeze(-1)
    return (torch.randn(batch, IN), is_init, *_states(module, batch))


@pytest.mark.parametrize("cls", MODULES)
def test_step_cell_traces_with_a_dynamic_batch(cls):
    step = STEPS[cls](_module(cls, 2)).eval()
    args = _step_args(step.module, 4)
    batch = torch.export.Dim("batch")
    program = torch.export.export(step, args, dynamic_shapes=tuple({0: batch} for _ in args))
    traced = torch.jit.trace(step, args)
    other = _step_args(step.module, 7)
    with torch.no_grad():
        expected = step(*other)
    for outputs in (program.module()(*other), traced(*other)):
        for got, want in zip(outputs, expected):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_step_cell_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    step = _LSTMStep(_module(LSTMModule, 2)).eval()
    args = _step_args(step.module, 4)
    batch = torch.export.Dim("batch")
    names = ["observation", "is_init", "h", "c"]
    torch.onnx.export(step, args, tmp_path / "step.onnx", dynamo=True, input_names=names,
                      dynamic_shapes=tuple({0: batch} for _ in args), report=False)  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "step.onnx"))
    other = _step_args(step.module, 9)
    got = session.run(None, {name: arg.numpy() for name, arg in zip(names, other)})
    with torch.no_grad():
        expected = step(*other)
    for value, want in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(value), want, atol=1e-5, rtol=0)
