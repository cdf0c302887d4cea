"""How a run writes its outputs so that nothing is lost: the one writer of
``predict.py``'s annotated images and videos, chips, JSON and JSONL.

- **Claimed before the work** (:class:`OutputGuard`): an output is never an
  input of the command (of any shard) or another output of the run, replaces
  an existing file only when allowed, and its folder must be writable.
- **Held against other runs**: a claim creates ``.<name>.lock`` beside the
  output, exclusively, holding ``pid host``; a second run that claims the
  same output while the first lives gets a one-line error. A lock whose
  process is gone (a killed run) is taken over, with that run's leftovers.
- **Written whole or not at all** (:class:`StagedFile`): into a temporary
  file beside the destination, renamed into place when complete. A symbolic
  or hard link at the destination is replaced, never written through; a
  killed run leaves only a hidden temporary file, never a partial output
  under its final name. Devices (``/dev/null``) are written directly.
- **Write errors name the output** (:class:`common.errors.OutputError`),
  not the input being processed.
"""
from __future__ import annotations

import glob
import os
import socket
import stat
import time

from .errors import InputError, OutputError


class OutputBusyError(InputError):
    """Another live run holds the output: the whole run stops (one line)."""

LOCK_SUFFIX = ".lock"
TMP_MARK = ".tmp"
# A breaker lock (taking over a killed run's lock) older than this was left by a run killed meanwhile.
BREAKER_STALE_S = 10.0


def is_device(path: str) -> bool:
    """True for an existing non-regular, non-folder file (``/dev/null``, a
    pipe): written in place, never renamed over or locked."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def file_id(path: str):
    """What identifies a file: its real path, and its ``(device, inode)``
    where it exists (hard links)."""
    real = os.path.normcase(os.path.realpath(path))
    try:
        st = os.stat(path)
        return real, (st.st_dev, st.st_ino)
    except OSError:
        return real, None


def _hidden(path: str, tag: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{tag}")


def temporary_name(path: str) -> str:
    """``.<name>.<pid>.tmp<ext>`` beside ``path``: hidden, ours, and with the
    destination's extension (OpenCV picks a video container by it)."""
    ext = os.path.splitext(path)[1]
    return _hidden(path, f".{os.getpid()}{TMP_MARK}{ext}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


class StagedFile:
    """A file written under a temporary name and renamed into place by
    :meth:`commit`; :meth:`discard` (or leaving a ``with`` block on an error)
    removes it. ``tmp`` is the name to write to."""

    def __init__(self, path: str):
        self.path = path
        self.direct = is_device(path)
        self.tmp = path if self.direct else temporary_name(path)

    def commit(self) -> None:
        if not self.direct:
            try:
                os.replace(self.tmp, self.path)
            except OSError as exc:
                self.discard()
                raise OutputError(self.path, exc) from None

    def discard(self) -> None:
        if not self.direct:
            try:
                os.remove(self.tmp)
            except OSError:
                pass

    def __enter__(self) -> "StagedFile":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all; :class:`OutputError`
    names ``path`` and the reason when it cannot."""
    with StagedFile(path) as staged:
        try:
            with open(staged.tmp, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise OutputError(path, exc) from None


def _lock_identity(lock: str) -> tuple[int, int, bytes] | None:
    """What tells one lock file from another at the same path: inode,
    modification time and contents (a new lock may get a freed inode's
    number back); None when there is none."""
    try:
        with open(lock, "rb") as f:
            st = os.fstat(f.fileno())
            return st.st_ino, st.st_mtime_ns, f.read(256)
    except FileNotFoundError:
        return None
    except OSError:
        return -1, -1, b""


class OutputGuard:
    """The one check that every output of a run passes, before the work.

    ``inputs``: every input of the command (all shards), which no output may
    replace, even with ``force``; ``hint``: added to the message when two
    outputs of the run collide. Call :meth:`release` when the run ends (each
    output's lock also goes once it is written: :meth:`done`)."""

    def __init__(self, inputs: list[str], force: bool, hint: str = ""):
        self.inputs: dict = {}
        self.inodes: dict = {}
        for p in inputs:
            real, inode = file_id(p)
            self.inputs[real] = p
            if inode is not None:
                self.inodes[inode] = p
        self.claimed: dict[str, str] = {}
        self.force, self.hint = force, hint
        self.locks: dict[str, str] = {}   # output's real path -> its lock file
        self._writable: dict[str, str | None] = {}
        self.host = socket.gethostname()

    def check(self, path: str, what: str, replace: bool = False) -> str:
        """Every check of :meth:`claim` but the lock; returns the output's
        real path. ``replace``: an existing file may be replaced without
        ``force`` (the unfinished output of an earlier run, under --resume)."""
        real, inode = file_id(path)
        src = self.inputs.get(real) or (self.inodes.get(inode) if inode is not None else None)
        if src is not None:
            raise InputError(f"{path}: the {what} would overwrite the input {src}")
        if is_device(path):
            return real
        if real in self.claimed:
            raise InputError(f"{path}: the {what} would overwrite the {self.claimed[real]} of this run"
                             + (f" ({self.hint})" if self.hint else ""))
        if os.path.isdir(path):
            raise InputError(f"{path}: the {what} needs a file name, this is a folder")
        if os.path.lexists(path) and not self.force and not replace:
            if what == "JSONL output":
                raise InputError(f"{path}: already exists (use --resume to continue it, or --force to replace it)")
            raise InputError(f"{path}: already exists (use --force to replace it"
                             + (", or --no-save for the JSON alone)" if what.startswith("annotated") else ")"))
        problem = self.folder_problem(os.path.dirname(os.path.abspath(path)))
        if problem:
            raise InputError(f"{path}: cannot write the {what} ({problem})")
        return real

    def claim(self, path: str, what: str, replace: bool = False) -> None:
        """Reserve ``path`` for ``what`` (e.g. "annotated image of pic.jpg")
        for this run, against other runs too; :class:`InputError` says why it
        may not be written."""
        real = self.check(path, what, replace)
        if not is_device(path):
            self._lock(path, real)
        self.claimed[real] = what

    def reserve(self, path: str, what: str) -> None:
        """Note ``path`` as another shard's output: a later claim of the same
        path fails as it would in one unsharded run (no other checks: that
        shard makes them)."""
        real, _ = file_id(path)
        self.claimed.setdefault(real, what)

    def _lock(self, path: str, real: str) -> None:
        lock = _hidden(real, LOCK_SUFFIX)
        try:
            self._create_lock(lock)
        except FileExistsError:
            seen = _lock_identity(lock)  # None: its run has just ended
            holder = self._holder(lock)
            if holder is None and self._take_stale(lock, real, seen):
                return
            who = f"pid {holder[0]} on {holder[1]}" if holder else "another run"
            raise OutputBusyError(f"{path}: another run ({who}) is writing it; wait for it to end, "
                                  f"or write elsewhere (a run killed on another machine leaves "
                                  f"{lock}: remove it)") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot claim the output ({exc.strerror or exc})") from None
        self.locks[real] = lock

    def _take_stale(self, lock: str, real: str, seen: tuple | None) -> bool:
        """Replace ``lock`` (as :func:`_lock_identity` saw it; None: gone), left by a killed run,
        with this run's; False when another run takes it. Done under a
        breaker (``<lock>.break``, created exclusively) and only while
        ``lock`` is still that stale file, so that of two runs finding the
        same stale lock one takes it and neither removes the other's new
        lock. A breaker older than :data:`BREAKER_STALE_S` was left by a run
        killed while taking over: it goes."""
        breaker = lock + ".break"
        for _ in range(2):
            try:
                fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                try:
                    if time.time() - os.path.getmtime(breaker) <= BREAKER_STALE_S:
                        return False  # another run is taking it over now
                    os.remove(breaker)
                except OSError:
                    pass
        else:
            return False
        os.close(fd)
        try:
            now = _lock_identity(lock)
            if now is not None and (now != seen or self._holder(lock) is not None):
                return False  # not the stale file any more: another run's lock
            self.clean_leftovers(real)
            try:
                self._create_lock(lock)
            except FileExistsError:  # a new run created it the moment it was gone
                return False
            self.locks[real] = lock
            return True
        finally:
            try:
                os.remove(breaker)
            except OSError:
                pass

    def _create_lock(self, lock: str) -> None:
        """Create ``lock`` holding ``pid host``, whole or not at all: written
        under a temporary name, then hard-linked to ``lock`` (which fails if
        it exists), so another run never reads a half-written lock.
        FileExistsError when it exists."""
        tmp = f"{lock}.{os.getpid()}{TMP_MARK}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {self.host}\n")
        try:
            os.link(tmp, lock)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive creation
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {self.host}\n")
        finally:
            os.remove(tmp)

    def _holder(self, lock: str) -> tuple[int, str] | None:
        """``(pid, host)`` of the live run holding ``lock``; None when that
        run is gone (the lock is stale, or unreadable and empty)."""
        try:
            with open(lock, encoding="utf-8") as f:
                parts = f.read().split()
            pid, host = int(parts[0]), parts[1]
        except (OSError, ValueError, IndexError):
            return None
        if host != self.host or (_pid_alive(pid) and pid != os.getpid()):
            return pid, host
        return None

    @staticmethod
    def clean_leftovers(path: str) -> None:
        """Remove what a killed run left beside ``path``: its stale lock and
        its temporary files (hidden, named after ``path``)."""
        folder, name = os.path.split(os.path.abspath(path))
        for f in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*{TMP_MARK}*")):
            pid = os.path.basename(f)[len(name) + 2:].split(".", 1)[0]
            if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
                try:
                    os.remove(f)
                except OSError:
                    pass
        try:
            os.remove(_hidden(path, LOCK_SUFFIX))
        except OSError:
            pass

    def done(self, path: str) -> None:
        """``path`` is written: its lock goes."""
        lock = self.locks.pop(file_id(path)[0], None)
        if lock:
            try:
                os.remove(lock)
            except OSError:
                pass

    def release(self) -> None:
        """Drop every lock this run still holds (at its end, however it ends)."""
        for lock in self.locks.values():
            try:
                os.remove(lock)
            except OSError:
                pass
        self.locks.clear()

    @staticmethod
    def space_problem(folder: str, size: int = 1 << 16) -> str | None:
        """Why ``size`` bytes cannot be written in ``folder`` now (a full
        disk: "No space left on device"), or None."""
        import tempfile
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".space-test-") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def folder_problem(self, folder: str) -> str | None:
        """Why files cannot be created in ``folder`` (None: they can). Tried
        for real with a temporary file: permission bits alone do not say it
        (root, read-only mounts)."""
        if folder not in self._writable:
            import tempfile
            try:
                os.makedirs(folder, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                    pass
                self._writable[folder] = None
            except OSError as exc:
                self._writable[folder] = exc.strerror or str(exc)
        return self._writable[folder]
