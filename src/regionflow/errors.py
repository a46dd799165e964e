"""Errors that carry a one-line message meant for the operator (the CLI prints them without a traceback)."""


class RegionflowError(Exception):
    """Base class: the message is complete and safe to show to a user."""


class InvalidKey(RegionflowError):
    """An object key that is empty, absolute, contains '..' or would leave its bucket."""


class ObjectNotFound(RegionflowError):
    """No object at that key."""


class InvalidSignature(RegionflowError):
    """A presigned link that is malformed, altered or expired."""


class FileRefused(RegionflowError):
    """A whole input file is unusable (empty, not UTF-8, not CSV, required column missing)."""


class ConfigError(RegionflowError):
    """A configuration or pipeline file is invalid; the message names the key and the reason."""


class FencedOut(RegionflowError):
    """A conditional write lost: the job is owned under another epoch or is no longer in that state."""


class StaleEpoch(RegionflowError):
    """A routing-control compare-and-set named an epoch that is no longer current."""


class ControlUnavailable(RegionflowError):
    """The routing control's store cannot be reached."""


class StoreUnavailable(RegionflowError):
    """The object store cannot be reached, or refuses regionflow's requests (credentials, missing bucket)."""


class StateUnavailable(RegionflowError):
    """The state store's database cannot be opened: unreachable, or it refused the credentials."""
