"""``PolicySession``: a stateful artifact stepped from numpy, without an env.

A deployment loop (a robot, a game server) has observations as arrays and no TorchRL env to
carry a recurrent policy's state. A session holds it: each :meth:`PolicySession.step` feeds
the state the previous step wrote (the metadata's state pairs), sets the reset input
(``is_init``) of the rows that start an episode, and keeps the next state for the next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from tensordict import TensorDict

from rlpol.dtypes import numpy_dtype, torch_dtype
from rlpol.errors import InputMismatchError

if TYPE_CHECKING:
    from rlpol.runtime.policy import ExportedPolicy

__all__ = ["PolicySession"]


class PolicySession:
    """An :class:`~rlpol.runtime.ExportedPolicy` on ``batch`` rows, holding their state.

    Made by :meth:`ExportedPolicy.session`. Every row starts an episode at the first step;
    afterwards a row starts one where ``step(..., reset=...)`` or :meth:`reset` says so. A
    stateless artifact works too (there is just no state to hold). Noise inputs of a
    ``random`` artifact are drawn as the policy draws them (torch's generator, or the
    policy's ``generator``).

    Args:
        policy: the loaded artifact.
        batch: the number of rows (envs, agents) stepped together.

    Attributes:
        batch: the number of rows.
        input_names: what :meth:`step` takes: the graph input names of ``metadata.inputs``
            except the state and reset inputs, e.g. ``["observation"]``.
        output_names: what :meth:`step` returns: the graph output names except the next
            states, e.g. ``["embed", "action_value", "chosen_action_value", "action"]``.

    Examples:
        >>> import numpy as np
        >>> from rlpol import export_policy, load_policy
        >>> from rlpol.testing import recurrent_env, recurrent_qvalue
        >>> policy = recurrent_qvalue("lstm")  # LSTMModule(4 -> 8), Q-value head, e-greedy
        >>> path = export_policy(policy, "/tmp/lstm.pt", env=recurrent_env(policy))
        >>> session = load_policy(path, trust_code=True).session(batch=2)  # a file we made
        >>> out = session.step({"observation": np.zeros((2, 4), np.float32)})
        >>> out["action"].shape, session.state["recurrent_state_h"].shape
        ((2, 2), (2, 1, 8))
        >>> session.reset(np.array([True, False]))  # row 0 starts a new episode next step
    """

    def __init__(self, policy: ExportedPolicy, batch: int) -> None:
        if type(batch) is not int or batch < 1:
            raise ValueError(f"a session needs batch >= 1 rows, got batch={batch!r}")
        self.policy = policy
        self.batch = batch
        meta = policy.metadata
        self._pairs = meta.states
        self._reset_inputs = {s.reset_input for s in self._pairs} - {None}
        held = {s.input for s in self._pairs} | self._reset_inputs
        self._inputs = [info for info in meta.inputs if info.name not in held]
        self._outputs = [info for info in meta.outputs
                         if info.name not in {s.output for s in self._pairs}]  # fmt: skip
        self._keys = {info.name: info.key for info in (*meta.inputs, *meta.outputs)}
        self.input_names = [info.name for info in self._inputs]
        self.output_names = [info.name for info in self._outputs]
        self._state = {
            s.input: np.full((batch, *s.shape), s.initial, dtype=numpy_dtype(torch_dtype(s.dtype)))
            for s in self._pairs
        }
        self._starting = np.ones(batch, dtype=bool)  # rows whose next step starts an episode

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The state the next step reads, by state input name, each ``[batch, *shape]``.

        Read-only views: change it with :meth:`reset`.
        """
        views = {}
        for name, array in self._state.items():
            view = array.view()
            view.flags.writeable = False
            views[name] = view
        return views

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start a new episode at the next step in the rows where ``mask`` is True.

        Their state goes back to its initial value and their reset input (``is_init``) is
        True at the next step.

        Args:
            mask: bool ``[batch]`` (or ``[batch, 1]``); None resets every row.

        Raises:
            InputMismatchError: ``mask`` is not a bool array of ``batch`` rows.
        """
        rows = np.ones(self.batch, dtype=bool) if mask is None else self._mask(mask)
        for state in self._pairs:
            self._state[state.input][rows] = state.initial
        self._starting |= rows

    def step(
        self, inputs: dict[str, np.ndarray], reset: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Run one step on every row and keep the next state.

        Args:
            inputs: one array per name of :attr:`input_names`, ``[batch, *shape]`` of the
                dtype ``metadata.inputs`` declares (``{"observation": float32 [batch, 4]}``).
            reset: bool ``[batch]``: rows that start an episode at this step (as
                ``reset(mask)`` right before it); None: none besides those already marked.

        Returns:
            one new array per name of :attr:`output_names`, ``[batch, *shape]``, as
            ``metadata.outputs`` declares (``{"action": int64 [batch, 2], ...}``).

        Raises:
            InputMismatchError: an input is missing, unknown, or not ``[batch, *shape]`` of
                its dtype; nothing is run and the state is unchanged.
        """
        missing = [name for name in self.input_names if name not in inputs]
        unknown = [name for name in inputs if name not in self.input_names]
        if missing or unknown:
            raise InputMismatchError(
                f"session.step takes {self.input_names}; got {sorted(inputs)}"
                f"{' (missing ' + str(missing) + ')' if missing else ''}"
                f"{' (unknown ' + str(unknown) + ')' if unknown else ''}; the state and "
                f"{sorted(self._reset_inputs) or 'reset'} inputs are the session's to feed"
            )
        entries = {}
        for info in self._inputs:
            value = np.asarray(inputs[info.name])
            if value.shape[:1] != (self.batch,):
                raise InputMismatchError(
                    f"session.step: {info.name!r} has shape {list(value.shape)}; expected "
                    f"[{self.batch}, {', '.join(map(str, info.shape))}] (batch={self.batch})"
                )
            entries[info.key] = torch.from_numpy(value)
        # the reset applies to copies, kept only once the step succeeded
        rows = np.zeros(self.batch, dtype=bool) if reset is None else self._mask(reset)
        for state in self._pairs:
            array = self._state[state.input].copy()
            array[rows] = state.initial
            entries[self._keys[state.input]] = torch.from_numpy(array)
        starting = torch.from_numpy((self._starting | rows)[:, None])
        for name in self._reset_inputs:
            entries[self._keys[name]] = starting
        td = self.policy(TensorDict(entries, batch_size=[self.batch]))
        for state in self._pairs:
            self._state[state.input] = td.get(self._keys[state.output]).numpy().copy()
        self._starting[:] = False
        return {info.name: td.get(info.key).numpy().copy() for info in self._outputs}

    def _mask(self, mask: np.ndarray) -> np.ndarray:
        rows = np.asarray(mask)
        if rows.dtype != np.bool_ or rows.reshape(-1).shape != (self.batch,):
            raise InputMismatchError(
                f"a session reset mask must be bool [{self.batch}]; got {rows.dtype} of shape "
                f"{list(rows.shape)}"
            )
        return rows.reshape(-1)

    def __repr__(self) -> str:
        return (
            f"PolicySession(batch={self.batch}, inputs={self.input_names}, "
            f"state={list(self._state)}, outputs={self.output_names})"
        )
