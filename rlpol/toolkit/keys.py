"""TorchRL's key names, written once.

A *nested key* is a string or a tuple of strings (``("next", "reward")``).
"""

from __future__ import annotations

NestedKey = str | tuple[str, ...]

OBSERVATION = "observation"
PIXELS = "pixels"  # an image observation (TorchRL's key): uint8 [*B, H, W, 3]
ACTION = "action"
REWARD = "reward"
DONE = "done"
TERMINATED = "terminated"
TRUNCATED = "truncated"
NEXT = "next"
STEP_COUNT = "step_count"
EPISODE_REWARD = "episode_reward"
IS_INIT = "is_init"  # InitTracker's flag (bool [*B, 1]): True on the first root of an episode
ACTION_VALUE = "action_value"
CHOSEN_ACTION_VALUE = "chosen_action_value"
ACTION_LOG_PROB = "action_log_prob"
DONE_KEYS: tuple[str, ...] = (DONE, TERMINATED, TRUNCATED)

