from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.experiment_in import ExperimentIn
from ...models.problem import Problem
from ...models.start_experiment_response_start_experiment import StartExperimentResponseStartExperiment
from ...types import Response


def _get_kwargs(
    surface: str,
    *,
    body: ExperimentIn,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/v1/admin/surfaces/{surface}/experiment".format(
            surface=quote(str(surface), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Problem | StartExperimentResponseStartExperiment | None:
    if response.status_code == 201:
        response_201 = StartExperimentResponseStartExperiment.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())

        return response_409

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
) -> Response[Problem | StartExperimentResponseStartExperiment]:
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
    body: ExperimentIn,
) -> Response[Problem | StartExperimentResponseStartExperiment]:
    """Start an experiment: arms with their own settings and traffic shares, each learning apart

    Args:
        surface (str):
        body (ExperimentIn): An experiment to start on a surface (``app/experiments.py``). Shares
            may sum to less than 1:
            the users left over stay outside, served by the surface's own settings.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | StartExperimentResponseStartExperiment]
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
    body: ExperimentIn,
) -> Problem | StartExperimentResponseStartExperiment | None:
    """Start an experiment: arms with their own settings and traffic shares, each learning apart

    Args:
        surface (str):
        body (ExperimentIn): An experiment to start on a surface (``app/experiments.py``). Shares
            may sum to less than 1:
            the users left over stay outside, served by the surface's own settings.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | StartExperimentResponseStartExperiment
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
    body: ExperimentIn,
) -> Response[Problem | StartExperimentResponseStartExperiment]:
    """Start an experiment: arms with their own settings and traffic shares, each learning apart

    Args:
        surface (str):
        body (ExperimentIn): An experiment to start on a surface (``app/experiments.py``). Shares
            may sum to less than 1:
            the users left over stay outside, served by the surface's own settings.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | StartExperimentResponseStartExperiment]
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
    body: ExperimentIn,
) -> Problem | StartExperimentResponseStartExperiment | None:
    """Start an experiment: arms with their own settings and traffic shares, each learning apart

    Args:
        surface (str):
        body (ExperimentIn): An experiment to start on a surface (``app/experiments.py``). Shares
            may sum to less than 1:
            the users left over stay outside, served by the surface's own settings.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | StartExperimentResponseStartExperiment
    """

    return (
        await asyncio_detailed(
            surface=surface,
            client=client,
            body=body,
        )
    ).parsed
