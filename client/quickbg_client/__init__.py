"""QuickBG's client: ``quickbg`` on the command line, ``Client`` in Python.

    from quickbg_client import Client

    with Client("http://127.0.0.1:8000", "your-api-key") as client:
        png = client.remove("photo.jpg", bg_color="ffffff")
        for result in client.remove_folder("photos", "cutouts", jobs=4):
            print(result.status, result.input, result.output)
"""

from quickbg_client.api import (
    Accepted,
    BatchAccepted,
    Client,
    batch_idempotency_key,
    file_sha256,
    idempotency_key,
)
from quickbg_client.errors import (
    APIError,
    AuthError,
    ConfigError,
    CreditsExhausted,
    QuickBGError,
    TaskFailed,
)
from quickbg_client.results import FileResult
from quickbg_client.retry import RetryPolicy

__version__ = "0.1.0"
__all__ = ["Accepted", "APIError", "AuthError", "BatchAccepted", "Client", "ConfigError",
           "CreditsExhausted", "FileResult", "QuickBGError", "RetryPolicy", "TaskFailed",
           "batch_idempotency_key", "file_sha256", "idempotency_key", "__version__"]
