package core

import (
	"bytes"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
)

// Batcher encodes changes into records and cuts them into batches.
type Batcher struct {
	Enc *Encoder
	// Tombstones adds a null-valued record after each delete, so compacted
	// topics forget the key.
	Tombstones bool
	cur        *Batch
	kbuf, vbuf []byte
	// slab holds the bytes of many records: one allocation per slabSize
	// instead of two per record. Records keep their slab alive.
	slab []byte
}

const slabSize = 256 << 10

// keep copies b into the slab and returns the copy.
func (b *Batcher) keep(p []byte) []byte {
	if len(p) > cap(b.slab)-len(b.slab) {
		b.slab = make([]byte, 0, max(slabSize, len(p)))
	}
	start := len(b.slab)
	b.slab = append(b.slab, p...)
	return b.slab[start:len(b.slab):len(b.slab)]
}

// Len is the number of records in the open batch.
func (b *Batcher) Len() int {
	if b.cur == nil {
		return 0
	}
	return len(b.cur.Records)
}

// Take returns the open batch (possibly empty) and starts a new one.
func (b *Batcher) Take() *Batch {
	out := b.cur
	if out == nil {
		out = &Batch{}
	}
	b.cur = nil
	return out
}

func (b *Batcher) batch() *Batch {
	if b.cur == nil {
		b.cur = &Batch{Records: make([]Record, 0, 256)}
	}
	return b.cur
}

func (b *Batcher) emit(ch *Change, keyRow []Datum) {
	bt := b.batch()
	t := ch.Table
	b.kbuf = b.Enc.AppendKey(b.kbuf[:0], t, keyRow)
	b.vbuf = b.Enc.AppendEnvelope(b.vbuf[:0], ch)
	var key []byte
	if len(b.kbuf) > 0 {
		key = b.keep(b.kbuf)
	}
	bt.Records = append(bt.Records, Record{Topic: t.Topic, Table: t.qualified, Op: ch.Op, Key: key, Value: b.keep(b.vbuf)})
	if ch.Op == cdc.OpDelete && b.Tombstones && key != nil {
		bt.Records = append(bt.Records, Record{Topic: t.Topic, Table: t.qualified, Key: key})
	}
}

// Add encodes ch into the open batch. An update that changes the key becomes
// a delete of the old key (with its tombstone) and a create of the new one,
// as Debezium does. Unchanged TOASTed values in the new row are taken from
// the old row when it has them (REPLICA IDENTITY FULL).
func (b *Batcher) Add(ch *Change) {
	switch ch.Op {
	case cdc.OpCreate, cdc.OpRead:
		b.emit(ch, ch.After)
	case cdc.OpDelete:
		b.emit(ch, ch.Before)
	case cdc.OpTruncate:
		b.emit(ch, nil)
	case cdc.OpUpdate:
		if ch.Before != nil {
			for i := range ch.After {
				if ch.After[i].Kind == KindUnchanged && i < len(ch.Before) && ch.Before[i].Kind == KindText {
					ch.After[i] = ch.Before[i]
				}
			}
			if keyChanged(ch.Table, ch.Before, ch.After) {
				del := *ch
				del.Op, del.After = cdc.OpDelete, nil
				b.emit(&del, ch.Before)
				cr := *ch
				cr.Op, cr.Before = cdc.OpCreate, nil
				b.emit(&cr, ch.After)
				return
			}
		}
		b.emit(ch, ch.After)
	}
}

// Commit marks the open batch as ending a transaction.
func (b *Batcher) Commit(end uint64, commitTime time.Time) {
	bt := b.batch()
	bt.CommitEnd = end
	bt.CommitTime = commitTime
}

func keyChanged(t *Table, before, after []Datum) bool {
	for _, i := range t.keyIdx {
		if i >= len(before) || i >= len(after) {
			return false
		}
		o, n := before[i], after[i]
		if o.Kind != KindText || n.Kind != KindText {
			continue
		}
		if !bytes.Equal(o.Data, n.Data) {
			return true
		}
	}
	return false
}
