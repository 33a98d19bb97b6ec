"""The one error type of `tarot-eval compare`: bad input, reported to the user as a message."""


class CompareError(ValueError):
    """Results folders that cannot be compared as asked (missing files, unknown metric, ...)."""
