"""Write files atomically: a temp file beside the target, fsync, then rename over it.

A failed or killed write never leaves a partial file and never clobbers the previous one. The
temp file is hidden and named ``.<target name>.<random>.tmp<suffix>`` in the target's
directory (``<suffix>`` the target's last suffix, ``.pt2`` for ``policy.pt2``, so that
loaders that look at the name, as torch's ``.pt2`` loaders do, accept it), so it never
shadows the target; only a write killed by SIGKILL (or a power loss) can leave one
behind, and removing it is always safe. The written file gets the permissions a plain
``open(path, "wb")`` would give it: the target's when it exists, else ``0o666`` less the umask
(``mkstemp`` alone would leave it ``0o600``, unreadable to other users).

:func:`atomic_directory` does the same for a whole directory: it is built in a hidden temp
directory beside the target (``.<target name>.<random>.tmp``) and renamed into place only when
complete, so a failed build leaves no half-written directory and the previous one untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_write_bytes"]


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``data`` to ``path`` atomically and return the resolved path.

    Args:
        path: the target file; its directory must exist.
        data: the complete content.
        check: called with the path of the complete, fsynced temp file before it replaces
            ``path``; an exception it raises aborts the write (the temp file is removed, the
            target is untouched) and propagates.

    Raises:
        OSError: the directory is missing or not writable, or the target is a directory (the
            caller turns it into a message for the user); the target is untouched.

    Examples:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write_bytes(target, b"new").read_bytes()
        b'new'
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _mode_for(target))
            os.fsync(handle.fileno())
        if check is not None:
            check(Path(temp_name))
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target.resolve()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temp directory beside ``path``; it replaces ``path`` on success.

    Yields the temp directory (hidden, ``.<name>.<random>.tmp``, mode ``0o777`` less the
    umask). When the block ends without an exception, it is renamed to ``path``: a missing
    ``path`` is created by that rename alone (atomic); an existing directory is first renamed
    aside, then removed once the new one is in place, so ``path`` is missing only between two
    renames. When the block raises, the temp directory is removed and ``path`` is untouched.

    Raises:
        OSError: the parent directory is missing or not writable, or ``path`` is a file (the
            caller turns it into a message for the user); ``path`` is untouched.

    Examples:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "bundle"
        >>> with atomic_directory(target) as staging:
        ...     _ = (staging / "a.txt").write_text("a")
        >>> sorted(p.name for p in target.iterdir())
        ['a.txt']
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(target))
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            os.replace(target, old / target.name)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(old / target.name, target)  # put the previous directory back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _mode_for(target: Path) -> int:
    """The permission bits ``open(target, "wb")`` would leave the file with."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return 0o666 & ~_umask()
    return stat.S_IMODE(mode) if stat.S_ISREG(mode) else 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then restore it at once
    os.umask(mask)
    return mask
