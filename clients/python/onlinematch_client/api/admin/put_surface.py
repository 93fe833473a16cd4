from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.surface_config import SurfaceConfig
from ...models.surface_update import SurfaceUpdate
from ...types import Response


def _get_kwargs(
    surface: str,
    *,
    body: SurfaceUpdate,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/v1/admin/surfaces/{surface}".format(
            surface=quote(str(surface), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Problem | SurfaceConfig | None:
    if response.status_code == 200:
        response_200 = SurfaceConfig.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Problem | SurfaceConfig]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    surface: str,
    *,
    client: AuthenticatedClient,
    body: SurfaceUpdate,
) -> Response[Problem | SurfaceConfig]:
    """Change a surface's exploration settings (fields left out keep their values)

    Args:
        surface (str):
        body (SurfaceUpdate): Fields left out keep their current values.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | SurfaceConfig]
    """

    kwargs = _get_kwargs(
        surface=surface,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    surface: str,
    *,
    client: AuthenticatedClient,
    body: SurfaceUpdate,
) -> Problem | SurfaceConfig | None:
    """Change a surface's exploration settings (fields left out keep their values)

    Args:
        surface (str):
        body (SurfaceUpdate): Fields left out keep their current values.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | SurfaceConfig
    """

    return sync_detailed(
        surface=surface,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    surface: str,
    *,
    client: AuthenticatedClient,
    body: SurfaceUpdate,
) -> Response[Problem | SurfaceConfig]:
    """Change a surface's exploration settings (fields left out keep their values)

    Args:
        surface (str):
        body (SurfaceUpdate): Fields left out keep their current values.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | SurfaceConfig]
    """

    kwargs = _get_kwargs(
        surface=surface,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    surface: str,
    *,
    client: AuthenticatedClient,
    body: SurfaceUpdate,
) -> Problem | SurfaceConfig | None:
    """Change a surface's exploration settings (fields left out keep their values)

    Args:
        surface (str):
        body (SurfaceUpdate): Fields left out keep their current values.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | SurfaceConfig
    """

    return (
        await asyncio_detailed(
            surface=surface,
            client=client,
            body=body,
        )
    ).parsed
