"""OpenAI-style error objects: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status."""
from __future__ import annotations


class APIError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the rest is the client's error object."""

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.type, self.param, self.code = message, status, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
