package archive

// Row is one archived Kafka record. The Parquet column of each field is
// named in its tag; optional columns are null where the field holds its
// zero value (so an empty record value reads back as a tombstone, nil).
type Row struct {
	// Topic, Partition and Offset say where the record was in Kafka.
	// Rows imported with `tributary import` have Partition ImportPartition.
	Topic     string `parquet:"topic,dict"`
	Partition int32  `parquet:"partition"`
	Offset    int64  `parquet:"offset,delta"`
	// Key is the record key (nil: none).
	Key []byte `parquet:"key,optional"`
	// Value is the record value, raw; nil is a tombstone.
	Value []byte `parquet:"value,optional"`
	// ArrivalMs is the Kafka record timestamp (Unix milliseconds): when
	// the record arrived, which point-in-time joins compare with.
	ArrivalMs int64 `parquet:"arrival_ms,delta"`
	// EventMs is the event time (Unix milliseconds) as the featurizer
	// reads it for a feature view's source topic: the view's event_time
	// field, or the record time when the view has none; 0 (null) when the
	// topic is no view's source or the field did not decode.
	EventMs int64 `parquet:"event_ms,optional,delta"`
	// Op, Before, After and LSN are set for Debezium change events
	// (topics cdc.*): the operation (c, u, d, r, t), the row images as
	// JSON text ("" when absent) and the change's LSN (source.lsn).
	Op     string `parquet:"op,optional,dict"`
	Before string `parquet:"before,optional"`
	After  string `parquet:"after,optional"`
	LSN    int64  `parquet:"lsn,optional"`
}
