"""Errors raised by the data layer.

Every error names the file (or feature) at fault, so a user with a broken dataset on disk knows what to fix
without reading a traceback from pyarrow or FFmpeg.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """Base class: the data on disk (or handed to a writer) is not what the format requires."""


class DatasetFormatError(DatasetError):
    """A metadata or table file exists but is malformed (missing column, wrong version, bad header)."""


class MissingDatasetFileError(DatasetError, FileNotFoundError):
    """A file the format requires is absent, e.g. ``meta/info.json`` of an unfinished dataset."""


class VideoDecodeError(DatasetError):
    """A video file is missing, empty, truncated, corrupt, not a video, or lacks a requested frame."""
