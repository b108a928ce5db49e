"""Errors that a user can fix: each ends a command with one line and exit code 2."""


class TomobenchError(Exception):
    """Base class of every error whose message is meant for the user."""


class RecipeError(TomobenchError, ValueError):
    """A recipe is malformed, names an unknown field, or asks for something impossible."""


class StoreError(TomobenchError, OSError):
    """A library cannot be written or read: wrong path, foreign recipe, full disk."""


class PhysicsError(TomobenchError, ValueError):
    """A geometry or projector cannot be built as asked."""


class SubmissionError(TomobenchError, ValueError):
    """A submission cannot be scored or shown: a missing or unreadable file, a wrong shape,
    dtype or non-finite values, an unknown split, an incomplete library."""


class LeaderboardError(TomobenchError, ValueError):
    """A leaderboard entry is malformed, or contradicts another entry."""


class DatasetError(TomobenchError, ValueError):
    """A dataset cannot be listed or fetched: a malformed registry, an unknown name, a failed
    or corrupted download, an archive that lacks what the registry says it holds."""
