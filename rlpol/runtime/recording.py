"""Collect rendered frames and write them to a GIF or video (``rlpol run --record``).

Where a recording's time goes (CartPole, 600x400 frames): gymnasium's ``render()`` costs about
3 ms a frame, most of it copying pygame's surface into a numpy array, which rlpol cannot
change. Writing a GIF used to cost ~60 ms a frame more: Pillow quantized every RGB frame to
256 colours with median cut and then re-optimized every frame's palette. The recorder instead
builds one palette from the first frame and maps every frame onto it as it arrives (~1 ms,
and a third of the memory of RGB frames), and writes the frames with that one palette.
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlpol._atomic import atomic_write_bytes
from rlpol.errors import BackendUnavailableError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FrameRecorder", "use_offscreen_sdl"]

# SDL's drivers that need no display, no sound card and no XDG_RUNTIME_DIR.
OFFSCREEN_SDL = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


def use_offscreen_sdl() -> None:
    """Make SDL (pygame) render off-screen, silently, unless the user chose its drivers.

    ``render_mode="rgb_array"`` draws into an in-memory surface, yet ``pygame.init()`` still
    opens SDL's default video and audio drivers, which print ``XDG_RUNTIME_DIR is invalid``
    and ALSA errors on a headless machine. Call this before pygame initialises; a driver
    already set in the environment is kept.
    """
    for name, driver in OFFSCREEN_SDL.items():
        os.environ.setdefault(name, driver)


# A GIF palette: the first frame's main colours, then a 6x6x6 colour cube for the rest.
FIRST_FRAME_COLOURS = 40
CANDIDATE_COLOURS = 1024  # of the first frame's most frequent colours, the ones considered
MIN_COLOUR_GAP = 10  # in some channel: 4-level cells then map each kept colour onto itself
CUBE_LEVELS = (0, 51, 102, 153, 204, 255)


def _gif_palette(first: Image.Image) -> Image.Image:
    """A "P" image whose 256-colour palette every frame of the GIF is mapped onto.

    The first frame's most frequent colours (its background and objects) come first, up to
    ``FIRST_FRAME_COLOURS`` of them, each ``MIN_COLOUR_GAP`` levels from the others in some
    channel: Pillow maps a pixel to the entry nearest to a corner of its 4-level colour cell,
    so a near-duplicate (an anti-aliased edge) would steal the pixels of the colour it
    borders. The 216 colours of a uniform cube follow, so a colour that appears only later,
    or an edge, is drawn within ~25 levels a channel.
    """
    from PIL import Image

    counted = first.getcolors(maxcolors=first.width * first.height) or []
    main: list[tuple[int, int, int]] = []
    for _, rgb in sorted(counted, reverse=True)[:CANDIDATE_COLOURS]:
        if all(max(abs(a - b) for a, b in zip(rgb, kept)) >= MIN_COLOUR_GAP for kept in main):
            main.append(rgb)
        if len(main) == FIRST_FRAME_COLOURS:
            break
    cube = itertools.product(CUBE_LEVELS, repeat=3)
    palette = Image.new("P", (1, 1))
    palette.putpalette([level for rgb in itertools.chain(main, cube) for level in rgb])
    return palette


class FrameRecorder:
    """Accumulates ``rgb_array`` frames ([H, W, 3] uint8) and saves them to one file.

    Rendering classic-control envs needs pygame and writing needs imageio (and its Pillow):
    install both with ``pip install 'rlpol[render]'``. Making a recorder points SDL at its
    off-screen drivers (:func:`use_offscreen_sdl`). A GIF maps every frame onto one 256-colour
    palette: the first frame's main colours and a uniform colour cube, so a colour that first
    appears later is drawn with its nearest palette colour. The file is written atomically, with the permissions of a plain
    ``open(path, "wb")``, as artifacts are.

    Args:
        path: where to write; ``.gif``, or any suffix imageio can write (e.g. ``.mp4`` with
            imageio-ffmpeg installed).
        fps: frames per second of the output.

    Examples:
        >>> import pathlib, tempfile
        >>> recorder = FrameRecorder(pathlib.Path(tempfile.mkdtemp()) / "run.gif")
        >>> for shade in (0, 128, 255):
        ...     recorder.add(np.full((4, 6, 3), shade, dtype=np.uint8))
        >>> from PIL import Image
        >>> gif = Image.open(recorder.save())
        >>> gif.n_frames, gif.info["duration"], recorder.frame_duration_ms
        (3, 30, 30)
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: int = 30) -> None:
        try:
            import imageio.v3  # noqa: F401
            import PIL.Image  # noqa: F401
            import pygame  # noqa: F401
        except ImportError as error:
            raise BackendUnavailableError(
                f"--record needs pygame (to render) and imageio (to write): {error}; install "
                "them with `pip install 'rlpol[render]'`"
            ) from error
        use_offscreen_sdl()
        self.path = Path(path)
        self.fps = fps
        self.frames: list = []  # PIL "P" images for a GIF, else [H, W, 3] uint8 arrays
        self._gif = self.path.suffix.lower() == ".gif"
        self._palette = None  # the first frame quantized: the palette of every GIF frame

    @property
    def frame_duration_ms(self) -> int:
        """How long a GIF shows each frame: ``1000 / fps`` rounded to whole centiseconds.

        GIF delays are centiseconds, and Pillow shows a frame equal to the previous one by
        adding its delay to the previous one's, so whole centiseconds keep the total exact:
        ``n`` added frames play for ``n * frame_duration_ms``.
        """
        return 10 * max(1, round(100 / self.fps))

    def add(self, frame: object) -> None:
        """Keep ``frame`` (``env.render()``'s [H, W, 3] uint8 array); ``None`` is skipped."""
        if frame is None:
            return
        array = np.asarray(frame, dtype=np.uint8)
        if not self._gif:
            self.frames.append(array)
            return
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(array))
        if self._palette is None:
            self._palette = _gif_palette(image)
        self.frames.append(image.quantize(palette=self._palette, dither=Image.Dither.NONE))

    def save(self) -> Path:
        """Write the frames to ``path`` and return it resolved.

        Raises:
            BackendUnavailableError: no frame was added (the env rendered nothing).
            OSError: the directory is missing or not writable; an existing file is untouched.
        """
        if not self.frames:
            raise BackendUnavailableError(
                "no frame was rendered: the env returned None from render(); make it with "
                "render_mode='rgb_array'"
            )
        if self._gif:
            # one palette for all frames: optimize=False skips Pillow's per-frame palette pass
            buffer = io.BytesIO()
            first, *rest = self.frames
            first.save(buffer, format="GIF", save_all=True, append_images=rest,
                       duration=self.frame_duration_ms, loop=0, optimize=False)
            data = buffer.getvalue()
        else:
            import imageio.v3 as iio

            data = iio.imwrite("<bytes>", np.stack(self.frames), extension=self.path.suffix,
                               duration=1000 / self.fps, loop=0)
        return atomic_write_bytes(self.path, data)
