"""The application's error type. The API's exception handler turns it into ``{"detail": ...}``."""


class QuickBGError(Exception):
    status_code = 400

    def __init__(self, detail: str, status_code: int | None = None):
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class NotFound(QuickBGError):
    status_code = 404


class Conflict(QuickBGError):
    status_code = 409
