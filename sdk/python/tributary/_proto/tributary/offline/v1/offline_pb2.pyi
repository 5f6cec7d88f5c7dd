import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tributary._proto.tributary.features.v1 import features_pb2 as _features_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetTrainingSetRequest(_message.Message):
    __slots__ = ("options", "rows")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    options: TrainingSetOptions
    rows: _containers.RepeatedCompositeFieldContainer[SpineRow]
    def __init__(self, options: _Optional[_Union[TrainingSetOptions, _Mapping]] = ..., rows: _Optional[_Iterable[_Union[SpineRow, _Mapping]]] = ...) -> None: ...

class TrainingSetOptions(_message.Message):
    __slots__ = ("features", "join_keys", "passthrough_columns", "event_time_only", "shard_index", "shard_count")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_ONLY_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    passthrough_columns: _containers.RepeatedScalarFieldContainer[str]
    event_time_only: bool
    shard_index: int
    shard_count: int
    def __init__(self, features: _Optional[_Iterable[str]] = ..., join_keys: _Optional[_Iterable[str]] = ..., passthrough_columns: _Optional[_Iterable[str]] = ..., event_time_only: _Optional[bool] = ..., shard_index: _Optional[int] = ..., shard_count: _Optional[int] = ...) -> None: ...

class SpineRow(_message.Message):
    __slots__ = ("join_keys", "event_timestamp", "passthrough")
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PASSTHROUGH_FIELD_NUMBER: _ClassVar[int]
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    event_timestamp: _timestamp_pb2.Timestamp
    passthrough: _containers.RepeatedCompositeFieldContainer[_features_pb2.Value]
    def __init__(self, join_keys: _Optional[_Iterable[str]] = ..., event_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., passthrough: _Optional[_Iterable[_Union[_features_pb2.Value, _Mapping]]] = ...) -> None: ...

class GetTrainingSetResponse(_message.Message):
    __slots__ = ("columns", "rows", "summary")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[TrainingSetRow]
    summary: TrainingSetSummary
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[TrainingSetRow, _Mapping]]] = ..., summary: _Optional[_Union[TrainingSetSummary, _Mapping]] = ...) -> None: ...

class TrainingSetRow(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[_features_pb2.Value]
    def __init__(self, values: _Optional[_Iterable[_Union[_features_pb2.Value, _Mapping]]] = ...) -> None: ...

class TrainingSetSummary(_message.Message):
    __slots__ = ("rows", "records", "not_found", "stale")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    records: int
    not_found: int
    stale: int
    def __init__(self, rows: _Optional[int] = ..., records: _Optional[int] = ..., not_found: _Optional[int] = ..., stale: _Optional[int] = ...) -> None: ...
