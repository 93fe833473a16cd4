from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.promote_experiment_arm_response_promote_experiment_arm import (
    PromoteExperimentArmResponsePromoteExperimentArm,
)
from ...models.promote_in import PromoteIn
from ...types import Response


def _get_kwargs(
    surface: str,
    *,
    body: PromoteIn,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/admin/surfaces/{surface}/experiment/promote".format(
            surface=quote(str(surface), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Problem | PromoteExperimentArmResponsePromoteExperimentArm | None:
    if response.status_code == 200:
        response_200 = PromoteExperimentArmResponsePromoteExperimentArm.from_dict(response.json())

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
) -> Response[Problem | PromoteExperimentArmResponsePromoteExperimentArm]:
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
    body: PromoteIn,
) -> Response[Problem | PromoteExperimentArmResponsePromoteExperimentArm]:
    """Promote an arm: the surface takes its settings and the experiment ends

    Args:
        surface (str):
        body (PromoteIn):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | PromoteExperimentArmResponsePromoteExperimentArm]
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
    body: PromoteIn,
) -> Problem | PromoteExperimentArmResponsePromoteExperimentArm | None:
    """Promote an arm: the surface takes its settings and the experiment ends

    Args:
        surface (str):
        body (PromoteIn):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | PromoteExperimentArmResponsePromoteExperimentArm
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
    body: PromoteIn,
) -> Response[Problem | PromoteExperimentArmResponsePromoteExperimentArm]:
    """Promote an arm: the surface takes its settings and the experiment ends

    Args:
        surface (str):
        body (PromoteIn):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | PromoteExperimentArmResponsePromoteExperimentArm]
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
    body: PromoteIn,
) -> Problem | PromoteExperimentArmResponsePromoteExperimentArm | None:
    """Promote an arm: the surface takes its settings and the experiment ends

    Args:
        surface (str):
        body (PromoteIn):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | PromoteExperimentArmResponsePromoteExperimentArm
    """

    return (
        await asyncio_detailed(
            surface=surface,
            client=client,
            body=body,
        )
    ).parsed
