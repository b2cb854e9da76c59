"""Output folders that never replace a file the command did not write.

A command that writes into ``--out DIR`` (``retrain``, ``darts``) replaces a file there
only when it is one the same command left in that folder, unchanged since: each file it
writes is recorded, with its SHA-256, in the folder's manifest ``.tuning-outputs.json``,
so running the command again into the same folder refreshes its results.  Any other
file of one of its names -- the user's own ``model.txt``, a file edited since, a
symbolic link, a FIFO -- is never replaced: the command refuses before any work
(training, searching), names the files and says how to proceed (``--overwrite``, or
another folder)::

    folder = OutputFolder(args.out, "retrain", RETRAIN_FILES, overwrite=args.overwrite)
    folder.check()                                  # before the work: TuningError or None
    ...
    folder.write_text("result.json", text)          # each file: written, then recorded
    folder.write("model.npz", lambda tmp: minidl.save(model, tmp))

Each file is written to a temporary file in the folder and renamed into place, so an
interrupted command never leaves half a file, and a symbolic link at the name (replaced
with ``--overwrite``) is replaced itself, never written through.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import TuningError

MANIFEST = ".tuning-outputs.json"
MANIFEST_FORMAT = 1
# A manifest lists a few file names and hashes; a larger file is not one we wrote.
MAX_MANIFEST_BYTES = 2 ** 20
_CHUNK = 2 ** 20


def sha256_of(path: Path) -> str:
    """The SHA-256 of a regular file's content, in hex (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class OutputFolder:
    """``path``, a folder ``command`` writes the files ``names`` into (see the module).

    ``overwrite``: replace files of those names that the command did not write.
    ``written``: the names written by this object so far, in order.
    """

    def __init__(self, path, command: str, names, overwrite: bool = False):
        self.path = Path(path)
        self.command = command
        self.names = tuple(names)
        self.overwrite = bool(overwrite)
        self.written: list[str] = []

    # -- which files are ours -------------------------------------------------------------

    def _manifest(self) -> dict | None:
        """The manifest's ``files`` ({} when there is none), or None when a file of that
        name is there but is not a manifest this module wrote."""
        path = self.path / MANIFEST
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return {}
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not (isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT
                and isinstance(data.get("files"), dict)):
            return None
        return data["files"]

    def is_ours(self, name: str, manifest: dict | None = None) -> bool:
        """Whether ``name`` is a regular file the manifest records as written by this
        command, with the content it had then."""
        manifest = self._manifest() if manifest is None else manifest
        entry = (manifest or {}).get(name)
        if not isinstance(entry, dict) or entry.get("command") != self.command:
            return False
        path = self.path / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False
            return sha256_of(path) == entry.get("sha256")
        except OSError:
            return False

    def foreign(self) -> list:
        """The names (of ``names``, and the manifest) already in the folder that this
        command may not replace without ``overwrite``."""
        manifest = self._manifest()
        found = [MANIFEST] if manifest is None else []
        for name in self.names:
            if os.path.lexists(self.path / name) and not self.is_ours(name, manifest):
                found.append(name)
        return found

    def check(self) -> None:
        """TuningError naming the files the command would replace without having written
        them (unless ``overwrite``); call it before the work, so that none is lost."""
        if self.overwrite:
            return
        foreign = self.foreign()
        if foreign:
            raise TuningError(
                f"--out {self.path}: {', '.join(foreign)} already "
                f"{'exists' if len(foreign) == 1 else 'exist'} there, not left by an earlier "
                f"`tuning {self.command}` into this folder (or changed since); nothing was "
                f"replaced. Give --overwrite to replace "
                f"{'it' if len(foreign) == 1 else 'them'}, or another --out folder")

    # -- writing ----------------------------------------------------------------------------

    def write(self, name: str, writer) -> Path:
        """``writer(tmp_path)`` writes the file to a temporary path (same suffix, same
        folder), renamed to ``name`` and recorded in the manifest; the final path."""
        if name not in self.names:
            raise ValueError(f"OutputFolder.write: {name!r} is not one of the files "
                             f"{self.names} of `tuning {self.command}`")
        if not self.overwrite and os.path.lexists(self.path / name) \
                and not self.is_ours(name):
            raise TuningError(f"--out {self.path}: {name} appeared there while `tuning "
                              f"{self.command}` ran and was not replaced. Give --overwrite "
                              f"to replace it, or another --out folder")
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.",
                                   suffix=".tmp" + Path(name).suffix)
        os.close(fd)
        try:
            writer(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())        # as an ordinary new file, not 0600
            os.replace(tmp, self.path / name)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
        self._record(name)
        self.written.append(name)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return self.write(name, lambda tmp: tmp.write_text(text))

    def _record(self, name: str) -> None:
        files = self._manifest() or {}
        files[name] = {"command": self.command, "sha256": sha256_of(self.path / name)}
        text = json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1,
                          sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f"{MANIFEST}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path / MANIFEST)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
