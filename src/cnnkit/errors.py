"""cnnkit's exception types: the only ones we raise on purpose.

Bad input from the user (impossible shapes, unknown names, malformed specs, wrong labels,
unreadable images) subclasses :class:`UserInputError`, itself a ``ValueError``; the CLI turns
those into exit status 2. Everything else that is our fault or the environment's (corrupt model
files, failed downloads, missing optional extras) subclasses :class:`CnnkitError` only and maps
to exit status 1. See INTERFACE.md, "Exit status".

Each message says where (layer, file, argument), what was expected and what was received.
"""

from __future__ import annotations


class CnnkitError(Exception):
    """Base class of every error cnnkit raises on purpose (CLI exit status 1)."""

    exit_code = 1


class UserInputError(CnnkitError, ValueError):
    """Bad input from the user: a wrong size, name, spec, label or image (CLI exit status 2)."""

    exit_code = 2


class ShapeError(UserInputError):
    """A size that does not work: a non-whole output size, a filter that does not fit,
    an input whose rank or channel count the layer cannot take."""


class SpecError(UserInputError):
    """An unknown model, layer or dataset name, or a malformed model spec."""


class LabelError(UserInputError):
    """Labels of the wrong shape, dtype or range for a loss."""


class ImageError(UserInputError):
    """An image file that cannot be read or converted as documented."""


class DatasetError(CnnkitError):
    """Missing, incomplete or corrupt dataset files (exit status 1)."""


class DownloadError(DatasetError):
    """A download that failed, was truncated, or did not match its checksum."""


class ModelFormatError(CnnkitError):
    """A model or checkpoint file that is missing, malformed, too large, of a newer format
    version, or carries a pickle payload."""


class NonFiniteLossError(CnnkitError):
    """Training produced a NaN or infinite loss; the message names the epoch and step."""


class MissingExtraError(CnnkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'cnnkit[{extra}]'"
        )
        self.package = package
        self.extra = extra


__all__ = [
    "CnnkitError",
    "UserInputError",
    "ShapeError",
    "SpecError",
    "LabelError",
    "ImageError",
    "DatasetError",
    "DownloadError",
    "ModelFormatError",
    "NonFiniteLossError",
    "MissingExtraError",
]
