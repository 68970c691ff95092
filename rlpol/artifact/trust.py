"""Which artifact formats run code stored in the file when loaded, and the one refusal.

Only ONNX loads without the user's say-so: a TorchScript archive, a torch.export program and
an AOTInductor package all run code that the file carries (see ``docs/artifact-format.md``,
"What loading runs"). Every loader (``load_policy``, ``rlpol verify``, ``rlpol serve``) asks
:func:`require_trust` before it opens one.
"""

from __future__ import annotations

import os

from rlpol.artifact.constants import CODE_FORMATS
from rlpol.errors import ArtifactError

__all__ = ["CODE_FORMATS", "WHAT_LOADING_RUNS", "require_trust"]

# format -> what loading a file of it runs, in words
WHAT_LOADING_RUNS = {
    "torchscript": "a TorchScript archive, and loading one compiles TorchScript code stored "
    "in the file, which runs when the policy is called and can read any file this process "
    "can (torch.from_file)",
    "exported_program": "a torch.export (.pt2) archive, and loading one runs code stored in "
    "the file (torch.export.load unpickles and evaluates it)",
    "aot_inductor": "an AOTInductor (.aoti.pt2) package, and loading one loads and runs the "
    "native shared library stored in the file",
}


def require_trust(
    path: str | os.PathLike[str], artifact_format: str, trust_code: bool, *, verb: str = "load"
) -> None:
    """Raise unless ``artifact_format`` loads without running stored code, or it is trusted.

    Args:
        path: the artifact, for the message.
        artifact_format: its format (``"onnx"``, ``"torchscript"``, ...).
        trust_code: the user's opt-in (``trust_code=True`` / ``--trust-code``).
        verb: what the caller was asked to do with it (``"load"``, ``"serve"``).

    Raises:
        ArtifactError: a code-running format without ``trust_code``, naming the fix.
    """
    if artifact_format in CODE_FORMATS and not trust_code:
        raise ArtifactError(
            f"cannot {verb} artifact {str(path)!r}: it is {WHAT_LOADING_RUNS[artifact_format]}; "
            f"{verb} it only if you made it or trust its source, with trust_code=True or "
            "--trust-code, or deploy the .onnx artifact instead"
        )
