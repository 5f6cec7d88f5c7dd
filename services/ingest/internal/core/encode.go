package core

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
)

// UnavailableValue stands for an unchanged TOASTed value that PostgreSQL did
// not send (Debezium's placeholder; never confused with NULL).
const UnavailableValue = "__debezium_unavailable_value"

// Datum kinds, as in pgoutput's TupleData.
const (
	KindNull      = 'n'
	KindUnchanged = 'u' // unchanged TOASTed value, not sent
	KindText      = 't'
)

// Datum is one column value in the text format.
type Datum struct {
	Kind byte
	Data []byte
}

// Column is one column of a captured table.
type Column struct {
	Name string
	OID  uint32
	// Key marks the message key columns (the primary key, or all columns when
	// keying by all columns).
	Key  bool
	Mask MaskAction
}

// Table is the shape of a captured table at one point of the stream.
type Table struct {
	Schema, Name string
	Topic        string
	Columns      []Column
	keyIdx       []int
	qualified    string
}

// NewTable builds a table shape; key names the key columns. Masking rules
// are applied by column name. Dropping a key column is refused.
func NewTable(schema, name string, cols []Column, key []string, rules MaskRules) (*Table, error) {
	t := &Table{Schema: schema, Name: name, Topic: cdc.Topic(schema, name), Columns: cols, qualified: schema + "." + name}
	keys := map[string]bool{}
	for _, k := range key {
		keys[k] = true
	}
	found := 0
	for i := range t.Columns {
		c := &t.Columns[i]
		c.Mask = rules[schema+"."+name+"."+c.Name]
		c.Key = keys[c.Name]
		if c.Key {
			found++
			if c.Mask == MaskDrop {
				return nil, fmt.Errorf("mask %s.%s.%s=drop: the column is part of the message key; use hash or redact", schema, name, c.Name)
			}
			t.keyIdx = append(t.keyIdx, i)
		}
	}
	if found != len(keys) {
		return nil, fmt.Errorf("table %s.%s: key columns %v not all present in %d columns", schema, name, key, len(cols))
	}
	return t, nil
}

// QualifiedName is schema.table.
func (t *Table) QualifiedName() string { return t.qualified }

// Change is one change event of a table.
type Change struct {
	Table *Table
	Op    string // cdc.OpCreate, ...
	// Before and After are rows in column order, nil when absent.
	Before, After []Datum
	Pos           cdc.Position
	TxID          uint32
	CommitTime    time.Time
	// Snapshot is "true", "last" or "false" (Debezium's source.snapshot).
	Snapshot string
}

// Encoder renders changes as Debezium JSON. It is not safe for concurrent use.
type Encoder struct {
	Mapper Mapper
	// Name is source.name (Debezium's topic prefix), DB is source.db.
	Name, DB string
	Version  string
	Now      func() time.Time
	// OnBadValue is told about values that could not be mapped (they are sent as strings).
	OnBadValue func(table, column string, err error)
	hash       *hasher
}

// SetMaskKey sets the key of MaskHash.
func (e *Encoder) SetMaskKey(key []byte) { e.hash = newHasher(key) }

// AppendKey appends the message key of row: a JSON object of the key
// columns, or nothing (a null key) for a table without key columns.
func (e *Encoder) AppendKey(dst []byte, t *Table, row []Datum) []byte {
	if len(t.keyIdx) == 0 || row == nil {
		return dst
	}
	dst = append(dst, '{')
	for n, i := range t.keyIdx {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, t.Columns[i].Name)
		dst = append(dst, ':')
		var d Datum
		if i < len(row) {
			d = row[i]
		}
		dst = e.appendDatum(dst, t, &t.Columns[i], d)
	}
	return append(dst, '}')
}

// AppendRow appends row as a JSON object (or null).
func (e *Encoder) AppendRow(dst []byte, t *Table, row []Datum) []byte {
	if row == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	first := true
	for i := range t.Columns {
		c := &t.Columns[i]
		if c.Mask == MaskDrop {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendString(dst, c.Name)
		dst = append(dst, ':')
		d := Datum{Kind: KindNull}
		if i < len(row) {
			d = row[i]
		}
		dst = e.appendDatum(dst, t, c, d)
	}
	return append(dst, '}')
}

func (e *Encoder) appendDatum(dst []byte, t *Table, c *Column, d Datum) []byte {
	switch d.Kind {
	case KindNull, 0:
		return append(dst, "null"...)
	case KindUnchanged:
		return AppendString(dst, UnavailableValue)
	}
	switch c.Mask {
	case MaskRedact:
		return AppendString(dst, RedactedValue)
	case MaskHash:
		if e.hash == nil {
			e.hash = newHasher(nil)
		}
		return e.hash.appendHash(dst, d.Data)
	}
	out, err := e.Mapper.AppendValue(dst, c.OID, d.Data)
	if err != nil {
		if e.OnBadValue != nil {
			e.OnBadValue(t.QualifiedName(), c.Name, err)
		}
		return appendString(dst, d.Data)
	}
	return out
}

// AppendEnvelope appends the Debezium envelope of ch.
func (e *Encoder) AppendEnvelope(dst []byte, ch *Change) []byte {
	t := ch.Table
	dst = append(dst, `{"before":`...)
	dst = e.AppendRow(dst, t, ch.Before)
	dst = append(dst, `,"after":`...)
	dst = e.AppendRow(dst, t, ch.After)
	dst = append(dst, `,"source":{"version":`...)
	dst = AppendString(dst, e.Version)
	dst = append(dst, `,"connector":"postgresql","name":`...)
	dst = AppendString(dst, e.Name)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, ch.CommitTime.UnixMilli(), 10)
	dst = append(dst, `,"snapshot":`...)
	dst = AppendString(dst, ch.Snapshot)
	dst = append(dst, `,"db":`...)
	dst = AppendString(dst, e.DB)
	dst = append(dst, `,"sequence":"[\"`...)
	dst = strconv.AppendUint(dst, ch.Pos.CommitLSN, 10)
	dst = append(dst, `\",\"`...)
	dst = strconv.AppendUint(dst, ch.Pos.LSN, 10)
	dst = append(dst, `\"]","schema":`...)
	dst = AppendString(dst, t.Schema)
	dst = append(dst, `,"table":`...)
	dst = AppendString(dst, t.Name)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(ch.TxID), 10)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, ch.Pos.LSN, 10)
	dst = append(dst, `},"op":`...)
	dst = AppendString(dst, ch.Op)
	dst = append(dst, `,"ts_ms":`...)
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	dst = strconv.AppendInt(dst, now().UnixMilli(), 10)
	return append(dst, '}')
}
