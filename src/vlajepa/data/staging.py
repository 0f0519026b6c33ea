"""Folders that appear only when complete: built in ``<root>.partial``, renamed to ``root`` by one ``os.replace``.

An interrupted writer therefore never leaves a dataset that looks finished; a leftover ``.partial`` folder is an
earlier interrupted run and is started over.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def partial_root(root: str | Path) -> Path:
    """Where a writer builds ``root`` before the final rename."""
    root = Path(root)
    return root.with_name(root.name + ".partial")


class StagedDirectory:
    """Lifecycle shared by the dataset writers: stage, then publish (rename) or abort (delete).

    Subclasses call :meth:`_stage` once their arguments are validated, write under ``partial_root``, and call
    :meth:`_publish` at the end of ``finalize``. ``_release`` closes open files before an abort.
    """

    what = "folder"  # named in error messages

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.partial_root = partial_root(self.root)
        if self.root.exists():
            raise FileExistsError(f"{self.root} already exists; choose a new {self.what} folder")
        self._done = False

    def _stage(self) -> None:
        if self.partial_root.exists():  # an interrupted earlier run of this writer: start over
            shutil.rmtree(self.partial_root)
        self.partial_root.mkdir(parents=True)

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError(f"writer for {self.root} is already finalized or aborted")

    def _publish(self) -> Path:
        if self.root.exists():
            raise FileExistsError(
                f"{self.root} appeared while writing; the finished {self.what} is left in {self.partial_root}"
            )
        os.replace(self.partial_root, self.root)
        self._done = True
        return self.root

    def _release(self) -> None:
        """Close open files before the staged folder is deleted (nothing to close by default)."""

    def finalize(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        """Stop writing and delete ``<root>.partial``; ``root`` is never created."""
        if self._done:
            return
        self._done = True
        self._release()
        shutil.rmtree(self.partial_root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.finalize()
