"""The size of a state transfer's last batches: ended ids and rotation edges are cut at batch_bytes too."""

from __future__ import annotations

import itertools

import msgpack

from replisession.core.ids import new_session_id

from .test_replication import A, B, C, Replica


def test_the_last_batch_of_a_transfer_respects_batch_bytes_however_many_sessions_ended() -> None:
    b = Replica(B, (new_session_id() for _ in itertools.count()))
    # 50,000 sessions ended within the tombstone horizon (one hour by default): 14 a second
    for n in range(50_000):
        end = {
            "id": new_session_id(),
            "prev": None,
            "owner": A.id,
            "stamp": [n + 1, A.id],
            "sets": {},
            "removes": [],
            "created": False,
            "destroyed": True,
            "expired": True,
            "mii": None,
            "age": 0.0,
        }
        b.manager.receive(A, "delta", end, 1.0)
    batches = list(b.manager.stream(C, lambda: 2.0))
    sizes = [len(msgpack.packb(batch.payload)) for batch in batches]
    # "A batch ends at batch_size sessions or batch_bytes, so it always fits a frame" (transfer.py)
    assert max(sizes) <= b.manager.batch_bytes, sizes
