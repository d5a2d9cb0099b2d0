"""User-facing errors: each names the bad value and where it came from (a file, a key, a flag)."""


class CodemixError(Exception):
    """An error caused by the user's input, reported without a traceback by the CLI."""


class ConfigError(CodemixError, ValueError):
    """A config file, recipe or flag holds a value codemix cannot use."""
