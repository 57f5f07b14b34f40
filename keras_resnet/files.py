"""Writing files so that a kill, a full disk or an error never leaves half a file behind.

Every file keras_resnet writes (checkpoints, ``.keras`` models, run.json, metrics, export
artifacts, converted weights) goes through :func:`atomic_path`: the writer fills a
temporary sibling named ``.<name>.tmp-<random><suffix>``, which is flushed to disk and then
renamed onto ``<name>`` in one step. Readers therefore see the old file or the new one,
never a mixture. A temporary left by a killed process is recognised by its name and
removed by :func:`remove_stale_temporaries` the next time the directory is used.

Operating-system failures (full disk, read-only filesystem, no permission, a file where a
directory should be) become :class:`FileWriteError`, one line naming the path, the cause
and what to do.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile

TMP_MARK = ".tmp-"

_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space and rerun",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun",
    errno.EROFS: "the filesystem is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a location you can write to",
    errno.EPERM: "operation not permitted; choose a location you can write to",
    errno.ENOTDIR: "a path component is a file, not a directory; choose another location",
    errno.EISDIR: "the path is a directory; name a file",
    errno.EEXIST: "a file stands where a directory is needed; remove it or choose another location",
    errno.ENAMETOOLONG: "the file name is too long",
}


class FileWriteError(OSError):
    """An operating-system error while writing, as one line: path, cause, what to do."""

    def __str__(self):
        return self.strerror


def describe_os_error(exc, path, action="write"):
    """One line naming ``path``, what failed and what to do about it."""
    advice = _ADVICE.get(getattr(exc, "errno", None), exc.strerror or str(exc))
    return f"cannot {action} {path}: {advice}"


def file_write_error(exc, path, action="write"):
    error = FileWriteError(getattr(exc, "errno", None) or errno.EIO, describe_os_error(exc, path, action))
    error.path = path
    return error


# A library that reports a failed write in words rather than an OSError (TensorFlow's
# OpError) carries the operating system's message; these are the ones worth naming.
_OS_MESSAGES = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}


def write_error_from_message(exc, path, action="write"):
    """The :class:`FileWriteError` naming ``path`` for an error whose message carries the
    operating system's words (a full disk, a read-only filesystem, ...), or None."""
    code = next((c for text, c in _OS_MESSAGES.items() if text in str(exc)), None)
    return None if code is None else file_write_error(OSError(code, os.strerror(code)), path, action)


class DirectoryInUse(OSError):
    """Another process holds the lock on a directory (:func:`lock_directory`)."""


@contextlib.contextmanager
def lock_directory(path, create=True):
    """An exclusive ``flock`` on the directory ``path`` itself for the life of the block (no
    lock file; the kernel releases it when the process ends, so a killed holder never
    leaves it stuck), as training does for its run directory. Raises
    :class:`DirectoryInUse` at once when another process holds it. With ``create`` a
    missing ``path`` is made, and removed again at the end when it is still empty."""
    import fcntl

    path = os.path.abspath(os.fspath(path))
    for _ in range(3):
        made = False
        if create and not os.path.lexists(path):
            os.makedirs(path, exist_ok=True)
            made = True
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryInUse(errno.EBUSY, "in use by another process", path) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed it (empty) as we opened it: again
    else:
        raise DirectoryInUse(errno.EBUSY, "changing under another process", path)
    try:
        yield path
    finally:
        if made:
            try:
                os.rmdir(path)  # only when empty (nothing was written); still locked here
            except OSError:
                pass
        os.close(fd)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _fsync_tree(path):
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for name in names:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
    else:
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def read_json_object(path):
    """The JSON object (a dict) in the regular file ``path``, or None where there is none:
    missing, a symlink (never followed), unreadable, not JSON, or not an object."""
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def current_umask():
    """The process's umask, read without changing it (``os.umask`` sets it, and a file
    another thread creates meanwhile would get the wrong mode)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022  # the usual default, where /proc is unavailable


_umask = current_umask  # the name before it was public


def remove(path):
    """Remove a file or a directory tree; nothing happens when ``path`` is absent."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def discard(path):
    """Remove ``path`` as one step: renamed to a temporary name first, so that a kill leaves
    either ``path`` whole or a temporary that the next sweep removes, never part of it."""
    if not os.path.lexists(path):
        return
    parent, base = os.path.split(os.path.abspath(path))
    aside = tempfile.mkdtemp(prefix=f".{base}{TMP_MARK}discard-", dir=parent)
    os.rename(path, os.path.join(aside, base))
    remove(aside)


def is_temporary(name):
    """Whether ``name`` (a base name) is a temporary left by :func:`atomic_path`."""
    return name.startswith(".") and TMP_MARK in name


def _restore_set_aside(parent, name):
    """A directory replaced by :func:`atomic_path` is set aside as ``.NAME.tmp-old-*``
    before the new one is renamed in; a kill between the two renames leaves ``NAME``
    missing. Put the old copy back, so that it is not swept with the temporaries."""
    prefix = f".{name}{TMP_MARK}old-"
    target = os.path.join(parent, name)
    if os.path.lexists(target):
        return
    for entry in sorted(os.listdir(parent)):
        if entry.startswith(prefix):
            os.rename(os.path.join(parent, entry), target)
            return


def _remove_own_temporaries(parent, base):
    """Temporaries of ``base`` that an earlier, killed write left in ``parent`` (in
    directories that no caller sweeps with :func:`remove_stale_temporaries`, such as an
    export's per-format subdirectories)."""
    _restore_set_aside(parent, base)
    prefix = f".{base}{TMP_MARK}"
    for name in os.listdir(parent):
        if name.startswith(prefix):
            remove(os.path.join(parent, name))


@contextlib.contextmanager
def atomic_path(path, *, directory=False, suffix=""):
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path``.

    ``suffix`` keeps an extension some writers insist on (Keras wants ``.keras``). With
    ``directory=True`` the temporary does not exist yet: the writer creates it. When the
    body raises, or (``directory=True``) the writer created nothing, the temporary is
    removed and ``path`` is left as it was. OS errors come out as :class:`FileWriteError`. Temporaries of ``path``
    left by an earlier write that was killed are removed first.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:  # a file stands where a directory is needed
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), parent) from None
        _remove_own_temporaries(parent, base)
        if directory:
            tmp = tempfile.mkdtemp(prefix=f".{base}{TMP_MARK}", suffix=suffix, dir=parent)
            os.rmdir(tmp)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{base}{TMP_MARK}", suffix=suffix, dir=parent)
            os.close(fd)
    except OSError as exc:
        raise file_write_error(exc, path) from exc
    try:
        yield tmp
        if not os.path.lexists(tmp) or (not directory and os.path.isdir(tmp)):
            raise RuntimeError(f"the writer produced nothing for {path}")
        _fsync_tree(tmp)
        if not directory:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files private; give a normal mode
        if directory and os.path.lexists(path):
            # A directory cannot be renamed over a non-empty one: move the old one aside
            # first, so that a kill leaves either the old or the new one under a known name.
            old = tempfile.mkdtemp(prefix=f".{base}{TMP_MARK}old-", dir=parent)
            os.rmdir(old)
            os.rename(path, old)
            os.rename(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
        _fsync_dir(parent)
    except OSError as exc:
        remove(tmp)
        if isinstance(exc, FileWriteError):
            raise
        raise file_write_error(exc, path) from exc
    except BaseException:
        remove(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def copy_file(source, path):
    """Copy the file ``source`` to ``path`` atomically."""
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
        shutil.copyfile(source, tmp)


def remove_stale_temporaries(directory, log=None):
    """Remove temporaries that a killed process left in ``directory``; returns their names."""
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed
    for name in names:
        set_aside = name.split(TMP_MARK)[0][1:] if TMP_MARK + "old-" in name else None
        if set_aside and not os.path.lexists(os.path.join(directory, set_aside)):
            _restore_set_aside(directory, set_aside)
            if log:
                log(f"restored {set_aside}, set aside by an interrupted write")
            continue
        if is_temporary(name):
            remove(os.path.join(directory, name))
            removed.append(name)
            if log:
                log(f"removed {name}, left by an interrupted write")
    return removed
