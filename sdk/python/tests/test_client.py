"""Every call of tributary.Client against a real `tributary dev`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import tributary
from tests.conftest import CLICKS, REPO, USERS, Dev, eventually

COUNTRY = "user_profile:country"
LAST_AMOUNT = "user_transactions:last_amount"


def test_list_feature_views(client: tributary.Client) -> None:
    views = {v["name"]: v for v in client.list_feature_views()}
    assert {"user_clicks", "user_profile", "user_transactions", "merchant_fraud"} <= set(views)
    assert views["user_clicks"]["join_keys"] == ["user_id"]
    feats = {f["name"]: f for f in views["user_clicks"]["features"]}
    assert feats["click_count_1h"]["aggregation"] == "count"
    assert feats["click_count_1h"]["window"] == "1h0m0s" or feats["click_count_1h"]["window"]


def test_online_features(client: tributary.Client, present_user: str) -> None:
    entities = [{"user_id": present_user}, {"user_id": "nobody"}]
    df = client.get_online_features([CLICKS, COUNTRY], entities)
    assert list(df.columns) == ["user_id", "user_clicks__click_count_1h", "user_profile__country"]
    assert df["user_id"].tolist() == [present_user, "nobody"]
    assert pd.api.types.is_numeric_dtype(df["user_clicks__click_count_1h"])
    assert df.loc[0, "user_clicks__click_count_1h"] > 0
    assert pd.isna(df.loc[1, "user_clicks__click_count_1h"])

    st = client.get_online_features([CLICKS], pd.DataFrame(entities), with_status=True)
    assert list(st.columns) == [
        "user_id",
        "user_clicks__click_count_1h",
        "user_clicks__click_count_1h__status",
        "user_clicks__click_count_1h__event_time",
    ]
    assert st["user_clicks__click_count_1h__status"].tolist() == ["PRESENT", "NOT_FOUND"]
    t = st.loc[0, "user_clicks__click_count_1h__event_time"]
    now = pd.Timestamp.now(tz="UTC")
    assert str(t.tz) == "UTC" and now - pd.Timedelta(hours=1) < t <= now + pd.Timedelta(minutes=1)
    assert pd.isna(st.loc[1, "user_clicks__click_count_1h__event_time"])

    table = client.get_online_features_table([CLICKS], entities, with_status=True)
    assert isinstance(table, pa.Table)
    assert table.column_names == list(st.columns) and table.num_rows == 2
    assert table.column("user_clicks__click_count_1h__status").to_pylist() == [
        "PRESENT",
        "NOT_FOUND",
    ]


def test_online_features_with_postgres(
    client: tributary.Client, present_user: str, postgres_demo: bool
) -> None:
    if not postgres_demo:
        pytest.skip("no PostgreSQL (initdb): tributary dev skips CDC, no users or transactions")

    def probe() -> pd.DataFrame | None:
        df = client.get_online_features(
            [COUNTRY, LAST_AMOUNT], [{"user_id": u} for u in USERS], with_status=True
        )
        ok = (df["user_profile__country__status"] == "PRESENT") & (
            df["user_transactions__last_amount__status"] == "PRESENT"
        )
        return df[ok] if ok.any() else None

    df = eventually("a demo user with a PRESENT country and last transaction", 180, probe)
    assert df["user_profile__country"].map(lambda c: isinstance(c, str) and len(c) == 2).all()
    # PostgreSQL's NUMERIC amount arrives as its decimal text.
    assert all(float(a) > 0 for a in df["user_transactions__last_amount"])


def test_unknown_view_is_invalid_argument(client: tributary.Client) -> None:
    with pytest.raises(
        tributary.InvalidArgument, match=r'features\[1\]: unknown feature view "nope"'
    ):
        client.get_online_features([CLICKS, "nope:x"], [{"user_id": "u00001"}])
    with pytest.raises(tributary.InvalidArgument) as info:
        client.get_online_features(["user_clicks:nope"], [{"user_id": "u00001"}])
    assert "nope" in info.value.details and info.value.code.name == "INVALID_ARGUMENT"


def test_predict(client: tributary.Client) -> None:
    p = client.predict("fraud_lr", {"user_id": "u00001"}, {"amount": 42.0})
    assert set(p) == {
        "outputs",
        "model",
        "version",
        "variant",
        "prediction_id",
        "defaulted_features",
    }
    assert p["model"] == "fraud_lr" and p["version"] and p["variant"] and p["prediction_id"]
    assert 0.0 <= p["outputs"]["score"] <= 1.0
    with pytest.raises(tributary.TributaryError, match="no_such_model"):
        client.predict("no_such_model", {"user_id": "u00001"})


def test_predict_batch(client: tributary.Client) -> None:
    df = pd.DataFrame({"user_id": ["u00001", "u00002", "u00003"], "amount": [1.0, 42.0, 9000.0]})
    out = client.predict_batch("fraud_lr", df)
    assert len(out) == 3
    assert (out["model"] == "fraud_lr").all()
    assert out["prediction_id"].nunique() == 3
    assert out["score"].between(0.0, 1.0).all()
    # The amount is a request-time feature the model reads: a huge amount
    # scores higher than a tiny one for the same user.
    same = client.predict_batch(
        "fraud_lr", pd.DataFrame({"user_id": ["u00001", "u00001"], "amount": [1.0, 9000.0]})
    )
    assert same.loc[1, "score"] > same.loc[0, "score"]
    explicit = client.predict_batch("fraud_lr", df, entity_keys=["user_id"])
    assert len(explicit) == 3
    with pytest.raises(ValueError, match="'merchant_id'"):
        client.predict_batch("fraud_lr", df, entity_keys=["merchant_id"])


def test_training_set(client: tributary.Client, present_user: str, archive_ready: None) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    spine = pd.DataFrame(
        {
            "user_id": [present_user, "u00002", "nobody"],
            "label": [True, False, None],
            "event_timestamp": [now, now, now],
        }
    )

    def probe() -> pd.DataFrame | None:
        ts = client.get_training_set(spine, [CLICKS, COUNTRY])
        return ts if ts.loc[0, "user_clicks__click_count_1h__status"] == "PRESENT" else None

    ts = eventually("a PRESENT row in the training set", 60, probe, 5)
    assert list(ts.columns) == [
        "user_id",
        "label",
        "event_timestamp",
        "user_clicks__click_count_1h",
        "user_clicks__click_count_1h__status",
        "user_profile__country",
        "user_profile__country__status",
    ]
    pd.testing.assert_frame_equal(ts[list(spine.columns)], spine)
    assert ts.loc[0, "user_clicks__click_count_1h"] > 0
    assert ts.loc[2, "user_clicks__click_count_1h__status"] == "NOT_FOUND"
    assert pd.isna(ts.loc[2, "user_clicks__click_count_1h"])

    # The same instants as naive UTC and as Unix milliseconds give the same features.
    feats = [c for c in ts.columns if c not in spine.columns]
    naive = spine.assign(event_timestamp=spine["event_timestamp"].dt.tz_localize(None))
    millis = spine.assign(event_timestamp=[int(now.value // 1_000_000)] * 3)
    for other in (naive, millis):
        got = client.get_training_set(other, [CLICKS, COUNTRY])
        pd.testing.assert_frame_equal(got[feats], ts[feats])
        pd.testing.assert_frame_equal(got[list(other.columns)], other)

    assert len(client.get_training_set(spine, [CLICKS], event_time_only=True)) == 3


def test_training_set_equals_the_cli(
    client: tributary.Client, dev: Dev, present_user: str, archive_ready: None, tmp_path: Path
) -> None:
    """get_training_set answers what `tributary training-set` writes for the
    same spine and archive. The archive grows while the demo runs, so the
    two are computed back to back until two SDK answers around one CLI run
    agree (bounded)."""
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    spine = pd.DataFrame(
        {
            "user_id": [present_user, *USERS[:9]],
            "event_timestamp": [int(now.value // 1_000_000) + i for i in range(10)],
            "label": [i % 3 == 0 for i in range(10)],
        }
    )
    spine.to_csv(tmp_path / "spine.csv", index=False)
    refs = [COUNTRY, "user_clicks:*"]
    offline = dev.data_dir / "offline"

    def probe() -> tuple[pd.DataFrame, pd.DataFrame] | None:
        before = client.get_training_set(spine, refs)
        subprocess.run(
            [
                str(dev.binary),
                "training-set",
                "--offline",
                str(offline),
                "--spine",
                str(tmp_path / "spine.csv"),
                "--features",
                ",".join(refs),
                "--out",
                str(tmp_path / "out.parquet"),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=120,
        )
        after = client.get_training_set(spine, refs)
        if not before.equals(after):
            return None
        return after, pd.read_parquet(tmp_path / "out.parquet")

    sdk, cli = eventually("the SDK's and the CLI's training sets computed alike", 120, probe, 2)
    assert list(sdk.columns) == list(cli.columns)
    assert (sdk["user_clicks__click_count_1h__status"] == "PRESENT").any()
    feats = [c for c in sdk.columns if c not in spine.columns]
    pd.testing.assert_frame_equal(sdk[feats], cli[feats], check_dtype=False)
    # A CSV spine has no types: the CLI passes its columns through as text.
    pd.testing.assert_frame_equal(
        sdk[list(spine.columns)].astype(str), cli[list(spine.columns)], check_dtype=False
    )


def test_training_set_streams_chunks_in_order(client: tributary.Client) -> None:
    n = 2500  # more than two spine messages and several answer messages
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(hours=2)
    spine = pd.DataFrame(
        {
            "row": np.arange(n, dtype="int64"),
            "user_id": [USERS[i % len(USERS)] for i in range(n)],
            "event_timestamp": [start + pd.Timedelta(seconds=i) for i in range(n)],
        }
    )
    ts = client.get_training_set(spine, [CLICKS])
    assert len(ts) == n
    assert ts["row"].tolist() == list(range(n))
    assert set(ts["user_clicks__click_count_1h__status"]) <= {"PRESENT", "NOT_FOUND", "STALE"}


def test_training_set_errors(client: tributary.Client) -> None:
    now = pd.Timestamp.now(tz="UTC")
    with pytest.raises(ValueError, match="event_timestamp"):
        client.get_training_set(pd.DataFrame({"user_id": ["u00001"]}), [CLICKS])
    with pytest.raises(ValueError, match="user_id"):
        client.get_training_set(pd.DataFrame({"event_timestamp": [now]}), [CLICKS])
    with pytest.raises(TypeError, match="event_timestamp: dtype"):
        client.get_training_set(
            pd.DataFrame({"user_id": ["u00001"], "event_timestamp": [1.5]}), [CLICKS]
        )
    with pytest.raises(tributary.InvalidArgument, match="nope"):
        client.get_training_set(
            pd.DataFrame({"user_id": ["u00001"], "event_timestamp": [now]}), ["nope:x"]
        )


def test_open_inference_protocol_with_tritonclient(dev: Dev) -> None:
    import tritonclient.grpc as grpcclient

    triton = grpcclient.InferenceServerClient(url="127.0.0.1:9102")
    assert triton.is_server_live() and triton.is_model_ready("fraud_lr")
    user = grpcclient.InferInput("user_id", [1], "BYTES")
    user.set_data_from_numpy(np.array([b"u00001"], dtype=np.object_))
    amount = grpcclient.InferInput("amount", [1], "FP64")
    amount.set_data_from_numpy(np.array([42.0], dtype=np.float64))
    result = triton.infer("fraud_lr", [user, amount])
    outputs = result.get_response().outputs
    assert [o.name for o in outputs]
    score = result.as_numpy(outputs[0].name)
    assert score is not None and score.size == 1 and 0.0 <= float(score.reshape(-1)[0]) <= 1.0


def test_generated_inference_code_imports() -> None:
    # Its own process: tritonclient registers the same proto package
    # ("inference") in protobuf's default pool.
    code = (
        "from tributary._proto.inference import grpc_predict_v2_pb2 as p, grpc_predict_v2_pb2_grpc"
        " as g; assert g.GRPCInferenceServiceStub; print(p.ModelInferRequest(model_name='m'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'model_name: "m"' in out.stdout
