"""TorchRL interop: TorchRL's envs, specs and modules as their rlpol counterparts.

rlpol never imports TorchRL on its own: these functions import it only when handed a TorchRL
object, which means the user's code has imported it already.
"""

from rlpol.toolkit.from_torchrl.envs import TRANSFORMS, rlpol_env
from rlpol.toolkit.from_torchrl.modules import (
    SUBSTITUTES,
    Substitute,
    is_torchrl,
    rlpol_policy,
)
from rlpol.toolkit.from_torchrl.specs import rlpol_spec

__all__ = [
    "SUBSTITUTES",
    "TRANSFORMS",
    "Substitute",
    "is_torchrl",
    "rlpol_env",
    "rlpol_policy",
    "rlpol_spec",
]
