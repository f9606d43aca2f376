"""Dependencies shared by the routes: settings, delivery, the store, and bearer-key authentication."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from ..delivery import Delivery
from ..settings import Settings
from ..store import NotificationStore

bearer_scheme = HTTPBearer(auto_error=False, description="One of the keys listed in API_KEYS.")


# The dependencies are `async def` so FastAPI runs them on the event loop, not in a thread pool.


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_delivery(request: Request) -> Delivery:
    """The delivery started by the app's lifespan."""
    delivery: Delivery = request.app.state.delivery
    return delivery


async def get_store(request: Request) -> NotificationStore:
    """The notification store opened by the app's lifespan."""
    store: NotificationStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
DeliveryDep = Annotated[Delivery, Depends(get_delivery)]
StoreDep = Annotated[NotificationStore, Depends(get_store)]


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Accept the request only with `Authorization: Bearer <one of API_KEYS>`."""
    if not credentials or not key_matches(credentials.credentials, settings.api.api_keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=INVALID_KEY_MESSAGE,
            headers={"WWW-Authenticate": "Bearer"},
        )


INVALID_KEY_MESSAGE = (
    "missing or invalid API key: send 'Authorization: Bearer <key>' with a key from API_KEYS"
)


def key_matches(presented: str, keys: Iterable[SecretStr]) -> bool:
    """Whether `presented` is one of `keys`.

    SHA-256 digests are compared, every key each in constant time, so timing reveals neither
    which key matched, nor how much of one, nor the keys' lengths.
    """
    digest = hashlib.sha256(presented.encode()).digest()
    matches = [
        hmac.compare_digest(digest, hashlib.sha256(key.get_secret_value().encode()).digest()) for key in keys
    ]
    return any(matches)


async def has_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> bool:
    """Whether the request carries a valid API key, for routes that tell more to a caller with one."""
    try:
        await require_api_key(settings, credentials)
    except HTTPException:
        return False
    return True
