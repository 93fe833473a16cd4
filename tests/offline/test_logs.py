"""Training from the service's own logs: the join, reading a topic to its end, and the loop from
served and clicked items (real Redis and broker) to the next model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli
from app.demo import build_world_bundle
from bandits.world import World
from bench.services import Broker
from offline.bundle import Bundle, current_version
from offline.data import load_interactions, load_items
from offline.logs import join_logs, merge_catalogue, write_interactions
from streaming.bus import MemoryBus, Message, read_to_end
from streaming.catalogue import ItemRecord
from streaming.events import FeedbackEvent, RequestContext, merge_decisions
from tests.app.conftest import SMALL, auth, real_settings
from tests.app.test_real_services import running


def decision(request_id: str, user: str, items: list[str], ts: float = 100.0) -> bytes:
    return RequestContext(
        request_id, "default", "v1", [0], [1.0], dict.fromkeys(items, (0.1, False)), ts, user_id=user
    ).encode()


def event(n: int, request_id: str, item: str, kind: str, value: float = 0.0) -> bytes:
    return FeedbackEvent(f"e{n}", request_id, item, kind, value, 101.0).encode()  # type: ignore[arg-type]  # literal checked by parse


@pytest.mark.parametrize("merged", [False, True], ids=["one per record", "merged records"])
def test_join_gives_one_row_per_shown_item_with_its_reward(merged: bool) -> None:
    decisions = [
        decision("r1", "alice", ["a", "b", "c", "d"], ts=100.0),
        decision("r2", "bob", ["a", "b"], ts=50.0),
        RequestContext("r3", "default", "v1", [0], [1.0], {"a": (0.1, False)}, 1.0).encode(),  # no user_id
    ]
    if merged:  # as the Kafka producer's drain writes them (streaming/events.py, merge_decisions)
        decisions = [merge_decisions(decisions[:2]), decisions[2]]
    decisions.append(b"not json")
    feedback = [
        event(1, "r1", "a", "impression"),
        event(2, "r1", "a", "click", 1.0),  # clicked: reward 1, one row
        event(3, "r1", "a", "click", 1.0),
        event(4, "r1", "b", "impression"),  # shown, not clicked: a real negative
        event(5, "r1", "c", "reward", 2.5),  # positive reward
        # "d" was served but no event arrived: maybe never displayed, so no row
        event(6, "r2", "a", "reward", 0.0),  # a zero reward is a negative
        event(7, "r2", "z", "click", 1.0),  # not served in r2
        event(8, "gone", "a", "click", 1.0),  # request not in the log
        event(9, "r3", "a", "click", 1.0),  # anonymous decision
        b"{}",
    ]
    joined = join_logs(decisions, feedback)
    # Decisions logged without the coin (before it was recorded) export p = -1: no propensity.
    assert [row[:6] for row in joined.rows] == [
        ("bob", "a", 50.0, 0.0, False, -1.0),
        ("alice", "a", 100.0, 1.0, False, -1.0),
        ("alice", "b", 100.0, 0.0, False, -1.0),
        ("alice", "c", 100.0, 1.0, False, -1.0),
    ]
    assert joined.summary() == {
        "rows": 4,
        "decisions": 4,
        "events": 10,
        "unknown_request": 3,
        "anonymous": 1,
        "malformed": 2,
    }


def test_exported_rows_carry_the_coin_position_and_arm_and_still_train(tmp_path: Path) -> None:
    """Each shown item's row carries its request's coin and p, the slot it was served in and
    the experiment arm that served it; the trainer's reader, which takes the contract's
    columns by name, loads the file as before."""
    served = dict.fromkeys(["a", "b"], (0.1, False))
    decisions = [
        RequestContext("r1", "default", "v1", [0], [1.0], served, 10.0, user_id="u", explore_coin=True,
                       explore_p=0.3, positions={"a": 0, "b": 1}, arm="x-1a2b3c/control").encode(),
        RequestContext("r2", "default", "v1", [0], [1.0], served, 20.0, user_id="v", explore_p=0.3).encode(),
    ]  # fmt: skip
    feedback = [event(1, "r1", "a", "click", 1.0), event(2, "r1", "b", "impression"), event(3, "r2", "a", "impression")]
    rows = join_logs(decisions, feedback).rows
    coins = [(r.item_id, r.explore_coin, r.explore_p) for r in rows]
    assert coins == [("a", True, 0.3), ("b", True, 0.3), ("a", False, 0.3)]
    path = write_interactions(rows, tmp_path / "logs.csv")
    with path.open(newline="") as fh:
        header, *lines = list(csv.reader(fh))
    assert header == ["user_id", "item_id", "timestamp", "reward", "explore_coin", "explore_p", "position", "arm"]
    assert [line[4:] for line in lines] == [
        ["1", "0.3", "0", "x-1a2b3c/control"],
        ["1", "0.3", "1", "x-1a2b3c/control"],
        ["0", "0.3", "-1", ""],
    ]
    data = load_interactions(path)
    assert data.item_ids.tolist() == ["a", "b", "a"] and data.reward.tolist() == [1.0, 0.0, 0.0]


def test_read_to_end_returns_every_record_then_stops() -> None:
    bus = MemoryBus(default_partitions=3)
    producer = bus.producer()
    producer.send_and_wait([Message("t", f"k{n}".encode(), str(n).encode()) for n in range(50)], 1.0)
    got = sorted(int(r.value) for r in read_to_end(bus, "t"))
    assert got == list(range(50))
    assert list(read_to_end(bus, "empty")) == []


def test_the_next_model_learns_what_was_served_and_clicked(redis_url: str, broker: Broker, tmp_path: Path) -> None:
    """Serve users through the real stack, let two groups click two different item groups, export
    the topics, train on the export alone: the new embeddings put each group nearer its items."""
    np.seterr(over="ignore")
    world = World(SMALL)
    bundles = tmp_path / "bundles"
    build_world_bundle(bundles, world, "v-world")
    settings = real_settings(bundles, redis_url, broker.bootstrap)
    # "published-1" arrives through the live catalogue (PUT /v1/items) after the bundle was
    # trained: the next model must know it, as any item.
    liked = {0: [*(f"item-{j}" for j in range(5)), "published-1"], 1: [f"item-{j}" for j in range(5, 10)]}
    candidates = [*(f"item-{j}" for j in range(20)), "published-1"]
    users = {f"user-{u}": u % 2 for u in range(20)}
    impressions = 0
    with running(settings, with_consumer=False) as client:
        r = client.put("/v1/items/published-1", json={"features": {"topic": "2"}}, headers=auth())
        assert r.status_code == 200 and r.json()["state"] == "live", r.text
        for round_ in range(8):
            for user, group in users.items():
                r = client.post("/v1/recommend", json={"user_id": user, "k": 10, "candidates": candidates})
                assert r.status_code == 200, r.text
                data = r.json()
                events = []
                for slot in data["items"]:
                    item = slot["item_id"]
                    kind = "click" if item in liked[group] else "impression"
                    events.append(
                        {"event_id": f"{data['request_id']}-{item}", "request_id": data["request_id"],
                         "item_id": item, "type": kind}
                    )  # fmt: skip
                impressions += len(events)
                posted = client.post("/v1/feedback", json={"events": events})
                assert posted.status_code == 202 and posted.json()["accepted"] == len(events), (round_, posted.text)

    # `onlinematch export-logs` and `onlinematch train --from-topics`, against the real broker,
    # as an operator would run them.
    logs, out = tmp_path / "logs.csv", tmp_path / "next"
    items = tmp_path / "items.csv"
    with items.open("w", newline="") as fh:
        csv.writer(fh).writerows([["item_id"], *([f"item-{j}"] for j in range(SMALL.n_items))])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
        mp.setenv("DECISIONS_TOPIC", settings.decisions_topic)
        mp.setenv("FEEDBACK_TOPIC", settings.feedback_topic)
        mp.setenv("ITEMS_TOPIC", settings.items_topic)
        assert cli(["export-logs", "--out", str(logs)]) == 0
        assert cli(["train", "--from-topics", "--items", str(items), "--out", str(out)]) == 0
    data = load_interactions(logs)
    assert len(data) == impressions  # every shown item, once, none lost or invented
    assert set(data.user_ids.tolist()) == set(users)
    clicked = data.reward > 0
    assert all(item in liked[users[u]] for u, item in zip(data.user_ids[clicked], data.item_ids[clicked], strict=True))

    version = current_version(out)
    assert version is not None
    bundle = Bundle.load(out / version)
    assert [i["rows"] for i in bundle.manifest["inputs"]] == [impressions]  # trained on the export
    assert not list((out / ".work").glob("*.csv"))  # one export per run, not an archive
    assert "published-1" in bundle.item_index  # the live catalogue joined the items file
    user_row = {u: n for n, u in enumerate(bundle.arrays["user_ids"].tolist())}
    item_row = {i: n for n, i in enumerate(bundle.arrays["item_ids"].tolist())}
    for group in (0, 1):
        members = bundle.arrays["user_emb"][[user_row[u] for u, g in users.items() if g == group]]
        own = bundle.arrays["item_emb"][[item_row[i] for i in liked[group]]]
        other = bundle.arrays["item_emb"][[item_row[i] for i in liked[1 - group]]]
        assert float((members @ own.T).mean()) > float((members @ other.T).mean()) + 0.1, group


def test_export_logs_without_a_broker_names_the_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        with pytest.raises(SystemExit, match="KAFKA_BOOTSTRAP_SERVERS"):
            cli(["export-logs", "--out", str(tmp_path / "x.csv")])


def test_the_catalogue_merges_into_the_items_file(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,genres,year\na,Comedy,1990\nb,Drama,2001\nc,Horror,1980\n")
    records = [
        ItemRecord("new", {"genres": "Comedy|Drama", "year": 2026.0, "colour": "red"}, 50.0, False, 1.0),
        ItemRecord("b", {"genres": "Romance"}, 0.0, False, 1.0),
        ItemRecord("b", {"genres": "War"}, 0.0, False, 0.5),  # older: loses
        ItemRecord("c", {}, 0.0, True, 2.0),
    ]
    merged = merge_catalogue(items, records, tmp_path / "merged.csv")
    assert merged.summary() == {"added": 1, "changed": 1, "deleted": 1, "ignored_columns": 1}
    loaded = load_items(merged.path)
    assert loaded.item_ids.tolist() == ["a", "b", "c", "new"]
    assert loaded.features["genres"] == [["Comedy"], ["Romance"], ["Horror"], ["Comedy", "Drama"]]
    assert loaded.features["year"][3] == ["2026"]  # a whole number as the file writes it
    assert loaded.created_at[3] == 50.0 and np.isnan(loaded.created_at[0])
