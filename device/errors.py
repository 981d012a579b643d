"""The one exception root of wildlink.

Every error a user can cause or fix derives from `WildlinkError` and also from the builtin
it resembles (the gpiozero habit), so `except ValueError` still works for callers who do not
know our names. Subpackages add their own leaves here or in their modules.
"""

from __future__ import annotations


class WildlinkError(Exception):
    """Root of all wildlink errors."""


class ConfigError(WildlinkError, ValueError):
    """A configuration file or value is invalid."""


class BundleError(WildlinkError, ValueError):
    """A model bundle is missing, incomplete or from another model."""


class ContainerError(WildlinkError, ValueError):
    """A compressed image file is truncated, corrupted or of an unknown version."""


class ImageError(WildlinkError, ValueError):
    """An input image cannot be read or has an unusable shape."""


class RadioError(WildlinkError, RuntimeError):
    """The radio did not answer as the datasheet says it must."""


class LinkError(WildlinkError, RuntimeError):
    """The link layer could not deliver or accept a frame."""
