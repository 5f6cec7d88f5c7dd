from tributary._proto.tributary.features.v1 import features_pb2 as _features_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("model", "entity_keys", "features")
    class EntityKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _features_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_features_pb2.Value, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENTITY_KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    model: str
    entity_keys: _containers.ScalarMap[str, str]
    features: _containers.MessageMap[str, _features_pb2.Value]
    def __init__(self, model: _Optional[str] = ..., entity_keys: _Optional[_Mapping[str, str]] = ..., features: _Optional[_Mapping[str, _features_pb2.Value]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction_id", "model", "version", "variant", "outputs", "defaulted_features")
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    model: str
    version: str
    variant: str
    outputs: _containers.ScalarMap[str, float]
    defaulted_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prediction_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., variant: _Optional[str] = ..., outputs: _Optional[_Mapping[str, float]] = ..., defaulted_features: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("model", "rows")
    class Row(_message.Message):
        __slots__ = ("entity_keys", "features")
        class EntityKeysEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        class FeaturesEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: _features_pb2.Value
            def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_features_pb2.Value, _Mapping]] = ...) -> None: ...
        ENTITY_KEYS_FIELD_NUMBER: _ClassVar[int]
        FEATURES_FIELD_NUMBER: _ClassVar[int]
        entity_keys: _containers.ScalarMap[str, str]
        features: _containers.MessageMap[str, _features_pb2.Value]
        def __init__(self, entity_keys: _Optional[_Mapping[str, str]] = ..., features: _Optional[_Mapping[str, _features_pb2.Value]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    model: str
    rows: _containers.RepeatedCompositeFieldContainer[PredictBatchRequest.Row]
    def __init__(self, model: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[PredictBatchRequest.Row, _Mapping]]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[PredictResponse]
    def __init__(self, predictions: _Optional[_Iterable[_Union[PredictResponse, _Mapping]]] = ...) -> None: ...
