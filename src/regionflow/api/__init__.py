"""The regions' HTTP API from the caller's side: route paths, wire format, auth header and the typed
clients (sync for the CLI, drill and switch steps; async for the console and the access point)."""

from regionflow.api.client import ApiClient, ApiError, AsyncApiClient
from regionflow.api.wire import auth_header

__all__ = ["ApiClient", "ApiError", "AsyncApiClient", "auth_header"]
