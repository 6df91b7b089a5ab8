"""The installed supervit version."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("supervit")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
