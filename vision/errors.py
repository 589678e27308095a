"""Errors about the user's data files. Kept free of torch so the data-prep scripts start instantly;
the training CLI reports them exactly like ``lskd.InvalidConfig``."""


class DataError(ValueError):
    """A dataset file or folder is missing or malformed; printed as one line, never a traceback."""
