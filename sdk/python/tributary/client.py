"""The client of Tributary's featureserver, modelserver and offline service."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
from google.protobuf import timestamp_pb2

from tributary._proto.tributary.features.v1 import features_pb2, features_pb2_grpc
from tributary._proto.tributary.offline.v1 import offline_pb2, offline_pb2_grpc
from tributary._proto.tributary.serving.v1 import serving_pb2, serving_pb2_grpc
from tributary.errors import from_rpc_error

EVENT_TIMESTAMP = "event_timestamp"
SPINE_ROWS_PER_MESSAGE = 1000

FeatureValue = float | int | str | bool | None


class Client:
    """Talks to the services of a Tributary deployment over gRPC.

    The defaults are the ports of `tributary dev` (DESIGN.md §4): the
    featureserver on 9101, the modelserver on 9102, the offline service on
    9104. `timeout` bounds every call, in seconds (a training set included).
    """

    def __init__(
        self,
        features: str = "127.0.0.1:9101",
        models: str = "127.0.0.1:9102",
        offline: str = "127.0.0.1:9104",
        *,
        timeout: float = 30.0,
        training_set_timeout: float = 600.0,
    ) -> None:
        self.timeout = timeout
        self.training_set_timeout = training_set_timeout
        self._channels = [grpc.insecure_channel(a) for a in (features, models, offline)]
        self._features = features_pb2_grpc.FeatureServiceStub(self._channels[0])  # type: ignore[no-untyped-call]
        self._models = serving_pb2_grpc.PredictionServiceStub(self._channels[1])  # type: ignore[no-untyped-call]
        self._offline = offline_pb2_grpc.OfflineServiceStub(self._channels[2])  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Closes the connections."""
        for ch in self._channels:
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Feature views.

    def list_feature_views(self) -> list[dict[str, Any]]:
        """The feature views the featureserver knows: name, entity,
        join_keys, source_topic and features (name, aggregation, window,
        column)."""
        method = "FeatureService/ListFeatureViews"
        try:
            resp = self._features.ListFeatureViews(
                features_pb2.ListFeatureViewsRequest(), timeout=self.timeout
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from None
        return [
            {
                "name": v.name,
                "entity": v.entity,
                "join_keys": list(v.join_keys),
                "source_topic": v.source_topic,
                "features": [
                    {
                        "name": f.name,
                        "aggregation": f.aggregation,
                        "window": f.window,
                        "column": f.column,
                    }
                    for f in v.features
                ],
            }
            for v in resp.views
        ]

    # Online features.

    def get_online_features(
        self,
        features: Sequence[str],
        entities: Sequence[Mapping[str, Any]] | pd.DataFrame,
        *,
        with_status: bool = False,
    ) -> pd.DataFrame:
        """Online values of `features` ("view:feature") for every entity
        (a list of join key dicts, or a DataFrame of join key columns).

        One row per entity, in order: the join key columns, then one column
        `view__feature` per feature; `with_status` adds `view__feature__status`
        (PRESENT, NOT_FOUND, STALE) and `view__feature__event_time` (UTC,
        NaT when unknown).
        """
        return pd.DataFrame(self._online_columns(features, entities, with_status))

    def get_online_features_table(
        self,
        features: Sequence[str],
        entities: Sequence[Mapping[str, Any]] | pd.DataFrame,
        *,
        with_status: bool = False,
    ) -> pa.Table:
        """get_online_features as a pyarrow Table."""
        return pa.Table.from_pandas(
            self.get_online_features(features, entities, with_status=with_status),
            preserve_index=False,
        )

    def _online_columns(
        self,
        features: Sequence[str],
        entities: Sequence[Mapping[str, Any]] | pd.DataFrame,
        with_status: bool,
    ) -> dict[str, Any]:
        rows = _entity_rows(entities)
        req = features_pb2.GetOnlineFeaturesRequest(
            features=list(features),
            entities=[features_pb2.EntityRow(join_keys=r) for r in rows],
        )
        method = "FeatureService/GetOnlineFeatures"
        try:
            resp = self._features.GetOnlineFeatures(req, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from None
        if len(resp.results) != len(rows):
            raise RuntimeError(f"{method}: {len(resp.results)} results for {len(rows)} entities")
        cols: dict[str, Any] = {}
        for key in dict.fromkeys(k for r in rows for k in r):
            cols[key] = [r.get(key) for r in rows]
        for i, ref in enumerate(resp.features):
            name = column_name(ref)
            vals = [vec.values[i] for vec in resp.results]
            cols[name] = column([from_value(v.value) for v in vals])
            if with_status:
                cols[name + "__status"] = [status_name(v.status) for v in vals]
                cols[name + "__event_time"] = [
                    pd.Timestamp(v.event_time.ToDatetime(tzinfo=_UTC))
                    if v.HasField("event_time")
                    else pd.NaT
                    for v in vals
                ]
        return cols

    # Predictions.

    def predict(
        self,
        model: str,
        entity_keys: Mapping[str, Any],
        features: Mapping[str, FeatureValue] | None = None,
    ) -> dict[str, Any]:
        """Scores one entity: a dict with outputs (by name), model, version,
        variant, prediction_id and defaulted_features (inputs that took the
        model's default because the feature was missing or stale)."""
        req = serving_pb2.PredictRequest(
            model=model,
            entity_keys={k: str(v) for k, v in entity_keys.items()},
            features={k: to_value(v, k) for k, v in (features or {}).items()},
        )
        try:
            resp = self._models.Predict(req, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err, "PredictionService/Predict") from None
        return _prediction(resp)

    def predict_batch(
        self,
        model: str,
        df: pd.DataFrame,
        *,
        entity_keys: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Scores every row of `df` with one PredictBatch call. The columns
        named by `entity_keys` (default: the columns that are a join key of
        a known feature view) are entity keys, the others request-time
        features. One row per input row: prediction_id, model, version,
        variant, defaulted_features, then one column per output."""
        if entity_keys is None:
            known = {k for v in self.list_feature_views() for k in v["join_keys"]}
            entity_keys = [c for c in df.columns if c in known]
        keys = list(entity_keys)
        for k in keys:
            if k not in df.columns:
                raise ValueError(f"entity_keys: column {k!r} is not in the DataFrame")
        feats = [c for c in df.columns if c not in keys]
        rows = []
        for rec in df.to_dict("records"):
            rows.append(
                serving_pb2.PredictBatchRequest.Row(
                    entity_keys={k: str(rec[k]) for k in keys},
                    features={
                        str(c): to_value(rec[c], str(c)) for c in feats if not _is_null(rec[c])
                    },
                )
            )
        req = serving_pb2.PredictBatchRequest(model=model, rows=rows)
        try:
            resp = self._models.PredictBatch(req, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err, "PredictionService/PredictBatch") from None
        preds = [_prediction(p) for p in resp.predictions]
        if len(preds) != len(df):
            raise RuntimeError(
                f"PredictionService/PredictBatch: {len(preds)} predictions for {len(df)} rows"
            )
        out = pd.DataFrame(
            {
                c: [p[c] for p in preds]
                for c in ("prediction_id", "model", "version", "variant", "defaulted_features")
            }
        )
        for name in dict.fromkeys(n for p in preds for n in p["outputs"]):
            out[name] = [p["outputs"].get(name, math.nan) for p in preds]
        return out

    # Training sets.

    def get_training_set(
        self,
        spine: pd.DataFrame,
        features: Sequence[str],
        *,
        event_time_only: bool = False,
    ) -> pd.DataFrame:
        """A point-in-time training set: for every spine row, the values
        GetOnlineFeatures would have answered at its event_timestamp.

        The spine has an `event_timestamp` column (pandas datetime64,
        tz-aware or naive UTC, or int Unix milliseconds) and the join keys
        of the features' views; other columns pass through. The answer has
        the spine's columns as they are, then per feature `view__feature`
        and `view__feature__status` (PRESENT, NOT_FOUND, STALE): what the
        CLI `tributary training-set` writes. The spine streams to the
        offline service in chunks and the rows stream back.
        """
        if EVENT_TIMESTAMP not in spine.columns:
            raise ValueError(f"spine: no column {EVENT_TIMESTAMP!r}")
        views = {f.split(":", 1)[0] for f in features}
        known = {v["name"]: v["join_keys"] for v in self.list_feature_views()}
        needed: set[str] = set()
        for v in sorted(views):
            if v in known:
                needed.update(known[v])
        missing = sorted(needed - set(spine.columns))
        if missing:
            raise ValueError(f"spine: missing join key column(s) {', '.join(missing)}")
        keys = [str(c) for c in spine.columns if c in needed]
        millis = event_millis(spine[EVENT_TIMESTAMP])
        options = offline_pb2.TrainingSetOptions(
            features=list(features), join_keys=keys, event_time_only=event_time_only
        )
        key_values = [spine[k].astype(str).tolist() for k in keys]
        requests = _spine_messages(options, key_values, millis)
        method = "OfflineService/GetTrainingSet"
        columns: list[str] = []
        rows: list[list[FeatureValue]] = []
        try:
            for msg in self._offline.GetTrainingSet(requests, timeout=self.training_set_timeout):
                if msg.columns:
                    columns = list(msg.columns)
                rows.extend([from_value(v) for v in r.values] for r in msg.rows)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from None
        if len(rows) != len(spine):
            raise RuntimeError(f"{method}: {len(rows)} rows for a spine of {len(spine)}")
        first = len(keys) + 1  # the server's columns: join keys, event_timestamp, features
        out = spine.reset_index(drop=True).copy()
        for j in range(first, len(columns)):
            out[columns[j]] = column([r[j] for r in rows])
        return out


_UTC = pd.Timestamp(0, tz="UTC").tzinfo


def column_name(ref: str) -> str:
    """The column of a feature reference: "view:feature" → "view__feature"."""
    return ref.replace(":", "__", 1)


def status_name(status: int) -> str:
    """PRESENT, NOT_FOUND, STALE (UNSPECIFIED when unset)."""
    name: str = features_pb2.FeatureStatus.Name(status)
    return name.removeprefix("FEATURE_STATUS_")


def from_value(v: features_pb2.Value) -> FeatureValue:
    """A Value as Python; a Value with no kind is None (null)."""
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    out: FeatureValue = getattr(v, kind)
    return out


def _is_null(x: Any) -> bool:
    if x is None or x is pd.NaT:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def to_value(x: Any, field: str) -> features_pb2.Value:
    """A Python scalar as a Value; None and NaN are an empty Value (null)."""
    if _is_null(x):
        return features_pb2.Value()
    if isinstance(x, bool | np.bool_):
        return features_pb2.Value(bool_value=bool(x))
    if isinstance(x, int | np.integer):
        return features_pb2.Value(int64_value=int(x))
    if isinstance(x, float | np.floating):
        return features_pb2.Value(double_value=float(x))
    if isinstance(x, str):
        return features_pb2.Value(string_value=x)
    raise TypeError(
        f"{field}: a {type(x).__name__} cannot be sent; want float, int, str, bool or None"
    )


def event_millis(col: pd.Series) -> list[int]:
    """event_timestamp as Unix milliseconds: datetime64 (tz-aware, or naive
    meaning UTC) or integer milliseconds."""
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise ValueError(f"spine: row {row + 1}: column {EVENT_TIMESTAMP}: null")
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(col.dtype):
        return [int(x) for x in col.to_numpy().astype("datetime64[ms]").astype("int64")]
    if pd.api.types.is_integer_dtype(col.dtype):
        return [int(x) for x in col]
    raise TypeError(
        f"spine: column {EVENT_TIMESTAMP}: dtype {col.dtype}, want datetime64 "
        "(tz-aware or naive UTC) or int Unix milliseconds"
    )


def _spine_messages(
    options: offline_pb2.TrainingSetOptions,
    key_values: list[list[str]],
    millis: list[int],
) -> Iterator[offline_pb2.GetTrainingSetRequest]:
    msg = offline_pb2.GetTrainingSetRequest(options=options)
    for i, ms in enumerate(millis):
        ts = timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)
        msg.rows.append(
            offline_pb2.SpineRow(join_keys=[kv[i] for kv in key_values], event_timestamp=ts)
        )
        if len(msg.rows) >= SPINE_ROWS_PER_MESSAGE:
            yield msg
            msg = offline_pb2.GetTrainingSetRequest()
    if msg.rows or msg.HasField("options"):
        yield msg


def column(values: list[FeatureValue]) -> pd.Series:
    """Values of one column, nulls kept: a column of int64 values is Int64,
    of bools boolean, of strings str (all nullable), of doubles float64
    (NaN for null)."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        return pd.Series(values, dtype="boolean")
    if kinds == {int}:
        return pd.Series(values, dtype="Int64")
    if kinds == {str}:
        return pd.Series(values, dtype="str")
    if kinds <= {float, int}:
        return pd.Series(values, dtype="float64")
    return pd.Series(values, dtype="object")


def _entity_rows(
    entities: Sequence[Mapping[str, Any]] | pd.DataFrame,
) -> list[dict[str, str]]:
    recs = entities.to_dict("records") if isinstance(entities, pd.DataFrame) else entities
    rows = []
    for i, rec in enumerate(recs):
        if not rec:
            raise ValueError(f"entities[{i}]: no join keys")
        rows.append({str(k): str(v) for k, v in rec.items()})
    return rows


def _prediction(resp: serving_pb2.PredictResponse) -> dict[str, Any]:
    return {
        "outputs": dict(resp.outputs),
        "model": resp.model,
        "version": resp.version,
        "variant": resp.variant,
        "prediction_id": resp.prediction_id,
        "defaulted_features": list(resp.defaulted_features),
    }
