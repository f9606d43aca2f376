"""Dependencies shared by the routes: settings, delivery, the store, and the authenticated client."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..delivery import Delivery
from ..notifications import Composer
from ..settings import Settings
from ..store import ClientNotifications, NotificationStore
from .auth import Authenticator, ThrottledError

bearer_scheme = HTTPBearer(auto_error=False, description="One of the keys listed in API_KEYS.")
"""Used by `authenticated_client` alone: the OpenAPI operations it secures are the authenticated routes."""


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


async def get_composer(request: Request) -> Composer:
    """The templates and message settings the app loaded (`create_app`)."""
    composer: Composer = request.app.state.composer
    return composer


SettingsDep = Annotated[Settings, Depends(get_settings)]
ComposerDep = Annotated[Composer, Depends(get_composer)]
DeliveryDep = Annotated[Delivery, Depends(get_delivery)]
StoreDep = Annotated[NotificationStore, Depends(get_store)]


CLIENT_STATE = "client"
"""Where `RequestLimits` leaves the authenticated client in the request's state."""
INVALID_KEY_MESSAGE = (
    "missing or invalid API key: send 'Authorization: Bearer <key>' with a key from API_KEYS"
)


async def get_authenticator(request: Request) -> Authenticator:
    """The API keys and the throttle of failed authentications, made by `create_app`."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def authenticated_client(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The name of the client whose key the request carries.

    `RequestLimits` authenticates every path under a route that depends on this one (`limits.Routes`)
    before it reads the body, and leaves the client in the request's state; without it, 401.
    """
    client: str | None = request.scope.get("state", {}).get(CLIENT_STATE)
    if credentials is None or client is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=INVALID_KEY_MESSAGE,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return client


ClientDep = Annotated[str, Depends(authenticated_client)]


async def client_store(store: StoreDep, client: ClientDep) -> ClientNotifications:
    """The store as the authenticated client sees it: only its own notifications."""
    return store.for_client(client)


ClientStoreDep = Annotated[ClientNotifications, Depends(client_store)]


async def has_api_key(
    request: Request, authenticator: Annotated[Authenticator, Depends(get_authenticator)]
) -> bool:
    """Whether the request carries a valid API key, for public routes that tell more to a client.

    A wrong key counts as a failed authentication of the caller's address, as on authenticated routes.
    """
    address = request.client.host if request.client else ""
    try:
        return authenticator.authenticate(request.headers.get("authorization"), address) is not None
    except ThrottledError:
        return False
