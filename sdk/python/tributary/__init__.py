"""Tributary's Python SDK: online features, training sets and predictions
from a notebook. See sdk/python/README.md."""

from tributary.client import Client
from tributary.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TributaryError,
    Unavailable,
)

__all__ = [
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "TributaryError",
    "Unavailable",
]
