"""The proxy's typed error; codes, statuses, the JSON shape and the handler are core.errors'."""
from __future__ import annotations

import contextlib
import errno
from typing import Iterator

from core.errors import STATUS_BY_CODE, ErrorCode, ServiceError, error_body, register_error_handlers

__all__ = ["STATUS_BY_CODE", "ErrorCode", "ProxyError", "disk_full_is_insufficient_storage", "error_body",
           "register_error_handlers"]


class ProxyError(ServiceError):
    """An error a client can act on: `ProxyError("model_busy", message)`; the code must be an ErrorCode.

    Raises:
        ValueError: from the constructor, when the code is not an ErrorCode.
    """


@contextlib.contextmanager
def disk_full_is_insufficient_storage(message: str = "the models volume is full; free some space and pull again"
                                      ) -> Iterator[None]:
    """A full volume or quota met in the block (ENOSPC, EDQUOT) is a client-facing insufficient_storage.

    Raises:
        ProxyError: insufficient_storage.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ProxyError(ErrorCode.INSUFFICIENT_STORAGE, message) from err
