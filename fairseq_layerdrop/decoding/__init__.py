from . import options  # noqa: F401
