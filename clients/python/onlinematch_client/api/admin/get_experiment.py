from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.get_experiment_response_get_experiment import GetExperimentResponseGetExperiment
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    surface: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/admin/surfaces/{surface}/experiment".format(
            surface=quote(str(surface), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> GetExperimentResponseGetExperiment | Problem | None:
    if response.status_code == 200:
        response_200 = GetExperimentResponseGetExperiment.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

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
) -> Response[GetExperimentResponseGetExperiment | Problem]:
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
) -> Response[GetExperimentResponseGetExperiment | Problem]:
    """The surface's latest experiment (running or ended) with each arm's figures

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[GetExperimentResponseGetExperiment | Problem]
    """

    kwargs = _get_kwargs(
        surface=surface,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    surface: str,
    *,
    client: AuthenticatedClient,
) -> GetExperimentResponseGetExperiment | Problem | None:
    """The surface's latest experiment (running or ended) with each arm's figures

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        GetExperimentResponseGetExperiment | Problem
    """

    return sync_detailed(
        surface=surface,
        client=client,
    ).parsed


async def asyncio_detailed(
    surface: str,
    *,
    client: AuthenticatedClient,
) -> Response[GetExperimentResponseGetExperiment | Problem]:
    """The surface's latest experiment (running or ended) with each arm's figures

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[GetExperimentResponseGetExperiment | Problem]
    """

    kwargs = _get_kwargs(
        surface=surface,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    surface: str,
    *,
    client: AuthenticatedClient,
) -> GetExperimentResponseGetExperiment | Problem | None:
    """The surface's latest experiment (running or ended) with each arm's figures

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        GetExperimentResponseGetExperiment | Problem
    """

    return (
        await asyncio_detailed(
            surface=surface,
            client=client,
        )
    ).parsed
