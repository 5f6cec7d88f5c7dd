package core

import (
	"sync/atomic"
	"time"
)

// Record is one Kafka record to write. A nil Value is a tombstone.
type Record struct {
	Topic string
	// Table (schema.table) and Op label the rows metric; Op is empty for tombstones.
	Table, Op  string
	Key, Value []byte
}

// Batch is a run of records handed from the WAL reader to the Kafka writer,
// in stream order. When CommitEnd is set, the batch ends a transaction and
// every change of that transaction is in this batch or an earlier one.
type Batch struct {
	Records   []Record
	CommitEnd uint64
	// TxnLSN names the transaction the records belong to (its commit
	// LSN, known from its BEGIN), 0 for snapshot batches; CommitTime is
	// its commit time. A transaction larger than one batch spans several,
	// all with its TxnLSN; the last has CommitEnd.
	TxnLSN     uint64
	CommitTime time.Time
	// Done, when set, is closed once the batch (and all before it) is acknowledged.
	Done chan struct{}
}

// Progress is what the Kafka writer has acknowledged; the WAL reader reads it
// to decide how far the slot may be confirmed.
type Progress struct {
	acked       atomic.Uint64
	lagMicros   atomic.Int64
	lastAckUnix atomic.Int64
}

// NewProgress starts at lsn (the slot's confirmed position).
func NewProgress(lsn uint64) *Progress {
	p := &Progress{}
	p.acked.Store(lsn)
	return p
}

// Ack records that everything up to a transaction ending at end, committed
// at commitTime, is acknowledged at now.
func (p *Progress) Ack(end uint64, commitTime, now time.Time) {
	if end > p.acked.Load() {
		p.acked.Store(end)
	}
	if !commitTime.IsZero() {
		p.lagMicros.Store(now.Sub(commitTime).Microseconds())
		p.lastAckUnix.Store(now.UnixMicro())
	}
}

// Acked is the end LSN of the last acknowledged transaction.
func (p *Progress) Acked() uint64 { return p.acked.Load() }

// Lag is the commit → Kafka acknowledgement delay of the latest acknowledged transaction.
func (p *Progress) Lag() time.Duration { return time.Duration(p.lagMicros.Load()) * time.Microsecond }

// FlushLSN is the position the slot may be confirmed at. acked is the end of
// the last acknowledged transaction; enqueued the end of the last transaction
// handed to the writer; idle the server's WAL position from the last
// keepalive received outside a transaction (every change before it was
// already received). When everything received is acknowledged, the slot may
// move to idle: this is what advances it while the captured tables are quiet
// and others churn.
func FlushLSN(acked, enqueued, idle uint64, inTxn bool) uint64 {
	flush := acked
	if !inTxn && acked >= enqueued && idle > flush {
		flush = idle
	}
	return flush
}
