"""Collect rendered frames and write them to a GIF or video (``rlpol run --record``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from rlpol.errors import BackendUnavailableError

__all__ = ["FrameRecorder"]


class FrameRecorder:
    """Accumulates ``rgb_array`` frames ([H, W, 3] uint8) and saves them with imageio.

    Rendering classic-control envs needs pygame and writing needs imageio: install both with
    ``pip install 'rlpol[render]'``. The file is written atomically.

    Args:
        path: where to write; ``.gif`` (or any suffix imageio can write, e.g. ``.mp4`` with
            imageio-ffmpeg installed).
        fps: frames per second of the output.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: int = 30) -> None:
        try:
            import imageio.v3  # noqa: F401
            import pygame  # noqa: F401
        except ImportError as error:
            raise BackendUnavailableError(
                f"--record needs pygame (to render) and imageio (to write): {error}; install "
                "them with `pip install 'rlpol[render]'`"
            ) from error
        self.path = Path(path)
        self.fps = fps
        self.frames: list[np.ndarray] = []

    def add(self, frame: object) -> None:
        if frame is not None:
            self.frames.append(np.asarray(frame, dtype=np.uint8))

    def save(self) -> Path:
        import imageio.v3 as iio

        if not self.frames:
            raise BackendUnavailableError(
                "no frame was rendered: the env returned None from render(); make it with "
                "render_mode='rgb_array'"
            )
        directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix,
                                    dir=directory)
        os.close(fd)
        try:
            iio.imwrite(temp, np.stack(self.frames), duration=1000 / self.fps, loop=0)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return self.path.resolve()
