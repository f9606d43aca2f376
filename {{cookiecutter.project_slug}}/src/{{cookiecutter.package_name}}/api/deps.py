"""Dependencies shared by the routes: settings, delivery, the store, and bearer-key authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
    """Accept the request only with `Authorization: Bearer <one of API_KEYS>`.

    Every configured key is compared, each in constant time, so timing reveals neither
    which key matched nor how much of one did.
    """
    presented = credentials.credentials.encode() if credentials else b""
    matches = [
        hmac.compare_digest(presented, key.get_secret_value().encode()) for key in settings.api.api_keys
    ]
    if not credentials or not any(matches):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key: send 'Authorization: Bearer <key>' with a key from API_KEYS",
            headers={"WWW-Authenticate": "Bearer"},
        )


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
