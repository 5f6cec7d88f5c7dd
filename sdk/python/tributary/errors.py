"""Python exceptions for the gRPC status codes the services answer with."""

from __future__ import annotations

import grpc


class TributaryError(Exception):
    """A call to a Tributary service failed; `code` is the gRPC status code,
    `details` the server's message (it names the field that is wrong)."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.code = code
        self.details = details
        self.method = method


class InvalidArgument(TributaryError):
    """The request was wrong (unknown view or feature, bad spine row, ...)."""


class NotFound(TributaryError):
    """The named object (for example a model) does not exist."""


class FailedPrecondition(TributaryError):
    """The server cannot answer in its current state."""


class Unavailable(TributaryError):
    """The service could not be reached or is not ready."""


class DeadlineExceeded(TributaryError):
    """The call took longer than the client's timeout."""


_BY_CODE: dict[grpc.StatusCode, type[TributaryError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(err: grpc.RpcError, method: str) -> TributaryError:
    """The exception for a failed call."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    return _BY_CODE.get(code, TributaryError)(code, details, method)
