from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.end_experiment_response_end_experiment import EndExperimentResponseEndExperiment
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    surface: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/admin/surfaces/{surface}/experiment/end".format(
            surface=quote(str(surface), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> EndExperimentResponseEndExperiment | Problem | None:
    if response.status_code == 200:
        response_200 = EndExperimentResponseEndExperiment.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

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
) -> Response[EndExperimentResponseEndExperiment | Problem]:
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
) -> Response[EndExperimentResponseEndExperiment | Problem]:
    """End the experiment: every user goes back to the surface's own settings

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[EndExperimentResponseEndExperiment | Problem]
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
) -> EndExperimentResponseEndExperiment | Problem | None:
    """End the experiment: every user goes back to the surface's own settings

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        EndExperimentResponseEndExperiment | Problem
    """

    return sync_detailed(
        surface=surface,
        client=client,
    ).parsed


async def asyncio_detailed(
    surface: str,
    *,
    client: AuthenticatedClient,
) -> Response[EndExperimentResponseEndExperiment | Problem]:
    """End the experiment: every user goes back to the surface's own settings

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[EndExperimentResponseEndExperiment | Problem]
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
) -> EndExperimentResponseEndExperiment | Problem | None:
    """End the experiment: every user goes back to the surface's own settings

    Args:
        surface (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        EndExperimentResponseEndExperiment | Problem
    """

    return (
        await asyncio_detailed(
            surface=surface,
            client=client,
        )
    ).parsed
