from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.item_put import ItemPut
from ...models.item_state_out import ItemStateOut
from ...models.problem import Problem
from ...types import Response


def _get_kwargs(
    item_id: str,
    *,
    body: ItemPut,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/v1/items/{item_id}".format(
            item_id=quote(str(item_id), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(*, client: AuthenticatedClient | Client, response: httpx.Response) -> ItemStateOut | Problem | None:
    if response.status_code == 200:
        response_200 = ItemStateOut.from_dict(response.json())

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
) -> Response[ItemStateOut | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    item_id: str,
    *,
    client: AuthenticatedClient,
    body: ItemPut,
) -> Response[ItemStateOut | Problem]:
    """Publish or change an item: servable on every replica from its next request

    Args:
        item_id (str):
        body (ItemPut): An item to publish or change. Features as in the offline job's items file:
            a categorical
            column's values joined by ``|``, a number as a number; only the serving bundle's item
            feature
            columns are taken (an unknown one is refused, the model has never seen it).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ItemStateOut | Problem]
    """

    kwargs = _get_kwargs(
        item_id=item_id,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    item_id: str,
    *,
    client: AuthenticatedClient,
    body: ItemPut,
) -> ItemStateOut | Problem | None:
    """Publish or change an item: servable on every replica from its next request

    Args:
        item_id (str):
        body (ItemPut): An item to publish or change. Features as in the offline job's items file:
            a categorical
            column's values joined by ``|``, a number as a number; only the serving bundle's item
            feature
            columns are taken (an unknown one is refused, the model has never seen it).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ItemStateOut | Problem
    """

    return sync_detailed(
        item_id=item_id,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    item_id: str,
    *,
    client: AuthenticatedClient,
    body: ItemPut,
) -> Response[ItemStateOut | Problem]:
    """Publish or change an item: servable on every replica from its next request

    Args:
        item_id (str):
        body (ItemPut): An item to publish or change. Features as in the offline job's items file:
            a categorical
            column's values joined by ``|``, a number as a number; only the serving bundle's item
            feature
            columns are taken (an unknown one is refused, the model has never seen it).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ItemStateOut | Problem]
    """

    kwargs = _get_kwargs(
        item_id=item_id,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    item_id: str,
    *,
    client: AuthenticatedClient,
    body: ItemPut,
) -> ItemStateOut | Problem | None:
    """Publish or change an item: servable on every replica from its next request

    Args:
        item_id (str):
        body (ItemPut): An item to publish or change. Features as in the offline job's items file:
            a categorical
            column's values joined by ``|``, a number as a number; only the serving bundle's item
            feature
            columns are taken (an unknown one is refused, the model has never seen it).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ItemStateOut | Problem
    """

    return (
        await asyncio_detailed(
            item_id=item_id,
            client=client,
            body=body,
        )
    ).parsed
