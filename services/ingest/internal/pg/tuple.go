package pg

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// rowChange is a decoded pgoutput Insert, Update or Delete (protocol version 1).
// Its datums point into the message buffer: use them before the next receive.
type rowChange struct {
	rel           uint32
	before, after []core.Datum
}

// tupleDecoder decodes row messages without allocating per column (the hot
// path: one call per changed row); it reuses its slices between calls.
type tupleDecoder struct {
	before, after []core.Datum
}

var errShort = errors.New("message too short")

// decodeRow decodes an 'I', 'U' or 'D' message.
func (d *tupleDecoder) decodeRow(msg []byte) (rowChange, error) {
	if len(msg) < 6 {
		return rowChange{}, errShort
	}
	kind := msg[0]
	rc := rowChange{rel: binary.BigEndian.Uint32(msg[1:5])}
	p := msg[5:]
	var err error
	switch kind {
	case 'I':
		if p[0] != 'N' {
			return rowChange{}, fmt.Errorf("insert: tuple type %q, want N", p[0])
		}
		d.after, p, err = decodeTuple(d.after[:0], p[1:])
		rc.after = d.after
	case 'U':
		if p[0] == 'K' || p[0] == 'O' {
			d.before, p, err = decodeTuple(d.before[:0], p[1:])
			if err != nil {
				return rowChange{}, fmt.Errorf("update old tuple: %w", err)
			}
			rc.before = d.before
			if len(p) == 0 {
				return rowChange{}, errShort
			}
		}
		if p[0] != 'N' {
			return rowChange{}, fmt.Errorf("update: tuple type %q, want N", p[0])
		}
		d.after, p, err = decodeTuple(d.after[:0], p[1:])
		rc.after = d.after
	case 'D':
		if p[0] != 'K' && p[0] != 'O' {
			return rowChange{}, fmt.Errorf("delete: tuple type %q, want K or O", p[0])
		}
		d.before, p, err = decodeTuple(d.before[:0], p[1:])
		rc.before = d.before
	default:
		return rowChange{}, fmt.Errorf("message type %q is not a row change", kind)
	}
	if err != nil {
		return rowChange{}, err
	}
	if len(p) != 0 {
		return rowChange{}, fmt.Errorf("%d trailing bytes", len(p))
	}
	return rc, nil
}

// decodeTuple decodes TupleData into dst and returns the rest of p.
func decodeTuple(dst []core.Datum, p []byte) ([]core.Datum, []byte, error) {
	if len(p) < 2 {
		return dst, p, errShort
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	for i := 0; i < n; i++ {
		if len(p) < 1 {
			return dst, p, fmt.Errorf("column %d: %w", i, errShort)
		}
		k := p[0]
		p = p[1:]
		switch k {
		case core.KindNull, core.KindUnchanged:
			dst = append(dst, core.Datum{Kind: k})
		case 't', 'b':
			if len(p) < 4 {
				return dst, p, fmt.Errorf("column %d: %w", i, errShort)
			}
			l := binary.BigEndian.Uint32(p)
			p = p[4:]
			if uint64(l) > uint64(len(p)) {
				return dst, p, fmt.Errorf("column %d: length %d beyond the message", i, l)
			}
			dst = append(dst, core.Datum{Kind: core.KindText, Data: p[:l:l]})
			p = p[l:]
		default:
			return dst, p, fmt.Errorf("column %d: unknown kind %q", i, k)
		}
	}
	return dst, p, nil
}
