// Package cdc defines the Debezium-compatible change event envelope written
// by ingest to cdc.<schema>.<table>, and the LSN de-duplication consumers use
// to drop events re-delivered after an ingest restart (delivery is
// at-least-once).
package cdc

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Operations, as Debezium spells them.
const (
	OpCreate   = "c"
	OpUpdate   = "u"
	OpDelete   = "d"
	OpRead     = "r" // a row of the initial snapshot
	OpTruncate = "t"
)

// Envelope is the value of a change event. It is Debezium's payload with the
// JSON converter's schemas disabled: consumers written for Debezium read it.
type Envelope struct {
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	Source Source         `json:"source"`
	Op     string         `json:"op"`
	TsMs   int64          `json:"ts_ms"`
}

// Source describes where a change came from.
type Source struct {
	Version   string `json:"version"`
	Connector string `json:"connector"`
	Name      string `json:"name"`
	TsMs      int64  `json:"ts_ms"`
	// Snapshot is "true", "last" (the snapshot's final row) or "false".
	Snapshot string `json:"snapshot"`
	DB       string `json:"db"`
	// Sequence is Debezium's ["<commit lsn>","<lsn>"], both decimal strings.
	Sequence string `json:"sequence"`
	Schema   string `json:"schema"`
	Table    string `json:"table"`
	TxID     int64  `json:"txId"`
	LSN      int64  `json:"lsn"`
}

// Topic returns the topic of a table's change events.
func Topic(schema, table string) string { return "cdc." + schema + "." + table }

// Position orders change events in the order ingest emits them: by commit LSN
// of their transaction, then by their own LSN within it.
type Position struct {
	CommitLSN uint64
	LSN       uint64
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	if p.CommitLSN != q.CommitLSN {
		return p.CommitLSN < q.CommitLSN
	}
	return p.LSN < q.LSN
}

// SequenceString renders a position as Debezium's source.sequence.
func (p Position) SequenceString() string {
	b, _ := json.Marshal([]string{strconv.FormatUint(p.CommitLSN, 10), strconv.FormatUint(p.LSN, 10)})
	return string(b)
}

// ParseSequence parses Debezium's source.sequence.
func ParseSequence(s string) (Position, error) {
	if p, ok := parseSequenceFast(s); ok {
		return p, nil
	}
	return parseSequenceJSON(s)
}

func parseSequenceJSON(s string) (Position, error) {
	var parts []string
	if err := json.Unmarshal([]byte(s), &parts); err != nil || len(parts) != 2 {
		return Position{}, fmt.Errorf("source.sequence %q: want [\"<commit lsn>\",\"<lsn>\"]", s)
	}
	c, err1 := strconv.ParseUint(parts[0], 10, 64)
	l, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, fmt.Errorf("source.sequence %q: positions must be decimal LSNs", s)
	}
	return Position{CommitLSN: c, LSN: l}, nil
}

// parseSequenceFast parses the exact form SequenceString writes,
// ["<digits>","<digits>"] (every change event carries one); anything else
// goes to encoding/json.
func parseSequenceFast(s string) (Position, bool) {
	num := func(s string, i int) (uint64, int, bool) {
		if i >= len(s) || s[i] != '"' {
			return 0, 0, false
		}
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i+1 || j >= len(s) || s[j] != '"' {
			return 0, 0, false
		}
		v, err := strconv.ParseUint(s[i+1:j], 10, 64)
		return v, j + 1, err == nil
	}
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return Position{}, false
	}
	c, i, ok := num(s, 1)
	if !ok || i >= len(s) || s[i] != ',' {
		return Position{}, false
	}
	l, i, ok := num(s, i+1)
	if !ok || i != len(s)-1 {
		return Position{}, false
	}
	return Position{CommitLSN: c, LSN: l}, true
}

// Deduper drops streamed change events already seen. Ingest emits a
// partition's events in position order, so after a restart re-delivered
// events are exactly those at or before the last position seen on their
// partition. Snapshot rows (op r) carry no stream position and always pass:
// applying them twice is harmless because they are full-row upserts.
type Deduper struct {
	last map[partitionKey]Position
}

type partitionKey struct {
	topic     string
	partition int
}

// NewDeduper returns an empty Deduper.
func NewDeduper() *Deduper { return &Deduper{last: map[partitionKey]Position{}} }

// Fresh reports whether an event at pos on topic/partition is new, and records it.
func (d *Deduper) Fresh(topic string, partition int, op string, pos Position) bool {
	if op == OpRead {
		return true
	}
	k := partitionKey{topic, partition}
	if last, ok := d.last[k]; ok && !last.Less(pos) {
		return false
	}
	d.last[k] = pos
	return true
}
