package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/tributary-ml/tributary/libs/cdc"
)

// RepartitionTopic is the internal topic the router writes and the
// aggregation stage reads. Every routed change (one per view and row
// change) goes to the partition of its view|entity (PartitionOf), so every
// change of one entity lands on one partition, in the order the router
// saw them; the router packs a partition's changes into batch records
// (AppendBatchEntry) to spare Kafka a record per change.
const RepartitionTopic = "featurizer.repartition"

// PartitionOf is the repartition partition of a view's entity among n
// partitions. The router places changes with it and a starting aggregator
// uses it to pick the tiles of the partitions it was assigned out of
// features.tiles, so the two must agree: FNV-1a of "view|entity".
func PartitionOf(view, entity string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnvString(fnvOffset, view)
	h = (h ^ '|') * fnvPrime
	h = fnvString(h, entity)
	return int(h % uint32(n))
}

// PartitionOfKey is the repartition partition of a routed record's key
// (view|entity) among n partitions; it equals PartitionOf.
func PartitionOfKey(key []byte, n int) int {
	if n <= 1 {
		return 0
	}
	h := uint32(fnvOffset)
	for _, c := range key {
		h = (h ^ uint32(c)) * fnvPrime
	}
	return int(h % uint32(n))
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnvString(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}

// Routed record value, version 1 (integers are varints unless noted):
//
//	byte     version (1)
//	byte     flags: 1 = an image to add follows, 2 = the change is an
//	         update, 4 = an image to retract follows (before the add),
//	         8 = a CDC stream position follows the layout
//	uvarint  len, view name
//	uvarint  len, entity id
//	uvarint  len, source topic
//	varint   source partition
//	varint   source offset
//	uint32   column layout fingerprint (little endian)
//	uvarint  commit LSN, uvarint LSN: the CDC stream position
//	         (source.sequence), only with flag 8; without it the
//	         source offset is the position (tiles.Pos)
//	images   the retract image, then the add image, as flagged; each is
//	         varint event time (Unix ms), uvarint column count, and per
//	         column a kind byte and its payload: 0 absent or null;
//	         1 number (uvarint len, JSON text); 2 string (uvarint len,
//	         bytes); 3 true; 4 false; 5 other JSON (uvarint len, JSON text)
//
// A CDC update whose before and after images belong to the same entity is
// one record, so the aggregation stage applies both under one source
// position (its replay check is per source record). Columns are the view's
// aggregated columns in the order of viewColumns; the fingerprint (FNV-1a
// of that list) lets an aggregator built from another spec version refuse
// records it would misread.
const routedVersion = 1

const (
	flagAdd     = 1
	flagUpdate  = 2
	flagRetract = 4
	flagPos     = 8
)

const (
	kindNull   = 0
	kindNumber = 1
	kindString = 2
	kindTrue   = 3
	kindFalse  = 4
	// kindRaw is any other JSON value (object, array), as its JSON text.
	kindRaw = 5
)

// colVal is one column's value in a routed change. Text aliases the
// record's bytes (or the router's scratch buffer).
type colVal struct {
	kind byte
	text []byte
}

// image is one row image of a routed change.
type image struct {
	ts   int64
	cols []colVal
}

// routed is a decoded routed record; byte slices alias the input.
type routed struct {
	hasAdd, hasRetract, update bool
	view                       []byte
	entity                     []byte
	srcTopic                   []byte
	srcPart                    int64
	srcOffset                  int64
	layout                     uint32
	// pos is the CDC stream position of the change (hasPos), which
	// breaks ties of event time for first, last and latest.
	hasPos       bool
	pos          cdc.Position
	retract, add image
}

// Routed batch record value, version 2: the routed changes (version 1
// values, above) of one repartition partition in the order the router
// made them:
//
//	byte     version (2)
//	repeated uvarint len, a version 1 routed record
//
// Its Kafka key is BatchKey of its partition. The aggregator applies the
// changes one by one, each under its own source position, so a batch
// record replayed after a crash is deduplicated change by change like
// single records (which it still accepts).
const routedBatchVersion = 2

// NewBatch starts a batch record value in b[:0].
func NewBatch(b []byte) []byte { return append(b[:0], routedBatchVersion) }

// AppendBatchEntry appends one routed record (a value the router emitted)
// to a batch record value started by NewBatch.
func AppendBatchEntry(batch, routed []byte) []byte {
	batch = binary.AppendUvarint(batch, uint64(len(routed)))
	return append(batch, routed...)
}

// BatchKey is the Kafka key of a batch record for repartition partition
// p; PartitionOfBatchKey reads it back.
func BatchKey(p int) []byte { return []byte("#" + strconv.Itoa(p)) }

// PartitionOfBatchKey returns the partition a BatchKey names.
func PartitionOfBatchKey(key []byte) (int, bool) {
	if len(key) < 2 || key[0] != '#' {
		return 0, false
	}
	p, err := strconv.Atoi(string(key[1:]))
	return p, err == nil && p >= 0
}

// batchEntries calls fn with each routed record of a batch record value
// (after its version byte); it stops at fn's first error or at malformed
// framing, which it reports.
func batchEntries(b []byte, fn func([]byte) error) error {
	for p := 1; p < len(b); {
		n, k := binary.Uvarint(b[p:])
		if k <= 0 || n > uint64(len(b)-p-k) {
			return errors.New("routed batch record: bad entry length")
		}
		p += k
		if err := fn(b[p : p+int(n)]); err != nil {
			return err
		}
		p += int(n)
	}
	return nil
}

func appendImage(b []byte, im *image) []byte {
	b = binary.AppendVarint(b, im.ts)
	b = binary.AppendUvarint(b, uint64(len(im.cols)))
	for _, c := range im.cols {
		b = append(b, c.kind)
		if c.kind == kindNumber || c.kind == kindString || c.kind == kindRaw {
			b = binary.AppendUvarint(b, uint64(len(c.text)))
			b = append(b, c.text...)
		}
	}
	return b
}

func appendRouted(b []byte, r *routed) []byte {
	b = append(b, routedVersion)
	var flags byte
	if r.hasAdd {
		flags |= flagAdd
	}
	if r.update {
		flags |= flagUpdate
	}
	if r.hasRetract {
		flags |= flagRetract
	}
	if r.hasPos {
		flags |= flagPos
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(r.view)))
	b = append(b, r.view...)
	b = binary.AppendUvarint(b, uint64(len(r.entity)))
	b = append(b, r.entity...)
	b = binary.AppendUvarint(b, uint64(len(r.srcTopic)))
	b = append(b, r.srcTopic...)
	b = binary.AppendVarint(b, r.srcPart)
	b = binary.AppendVarint(b, r.srcOffset)
	b = binary.LittleEndian.AppendUint32(b, r.layout)
	if r.hasPos {
		b = binary.AppendUvarint(b, r.pos.CommitLSN)
		b = binary.AppendUvarint(b, r.pos.LSN)
	}
	if r.hasRetract {
		b = appendImage(b, &r.retract)
	}
	if r.hasAdd {
		b = appendImage(b, &r.add)
	}
	return b
}

var errRoutedShort = errors.New("routed record: truncated")

type routedReader struct {
	b []byte
	p int
}

func (rd *routedReader) bytes(what string) ([]byte, error) {
	n, k := binary.Uvarint(rd.b[rd.p:])
	if k <= 0 || n > uint64(len(rd.b)-rd.p-k) {
		return nil, fmt.Errorf("routed record: bad %s length", what)
	}
	rd.p += k
	s := rd.b[rd.p : rd.p+int(n)]
	rd.p += int(n)
	return s, nil
}

func (rd *routedReader) varint(what string) (int64, error) {
	v, k := binary.Varint(rd.b[rd.p:])
	if k <= 0 {
		return 0, fmt.Errorf("routed record: bad %s", what)
	}
	rd.p += k
	return v, nil
}

func (rd *routedReader) uvarint(what string) (uint64, error) {
	v, k := binary.Uvarint(rd.b[rd.p:])
	if k <= 0 {
		return 0, fmt.Errorf("routed record: bad %s", what)
	}
	rd.p += k
	return v, nil
}

func (rd *routedReader) image(im *image) error {
	var err error
	if im.ts, err = rd.varint("event time"); err != nil {
		return err
	}
	n, k := binary.Uvarint(rd.b[rd.p:])
	if k <= 0 || n > uint64(len(rd.b)-rd.p-k) {
		return errors.New("routed record: bad column count")
	}
	rd.p += k
	im.cols = im.cols[:0]
	for i := uint64(0); i < n; i++ {
		if rd.p >= len(rd.b) {
			return errRoutedShort
		}
		c := colVal{kind: rd.b[rd.p]}
		rd.p++
		switch c.kind {
		case kindNull, kindTrue, kindFalse:
		case kindNumber, kindString, kindRaw:
			if c.text, err = rd.bytes("column"); err != nil {
				return err
			}
			// Numbers and other JSON go into tiles as they are: text that
			// is not JSON would make every later flush fail to encode.
			if c.kind == kindNumber {
				if end, _, ok := scanNumber(c.text, 0); !ok || end != len(c.text) {
					return fmt.Errorf("routed record: column %d: %q is not a JSON number", i, c.text)
				}
			} else if c.kind == kindRaw {
				if end, k, ok := scanValue(c.text, 0, 0); !ok || end != len(c.text) || (k != '{' && k != '[') {
					return fmt.Errorf("routed record: column %d: %q is not a JSON object or array", i, c.text)
				}
			}
		default:
			return fmt.Errorf("routed record: column %d has unknown kind %d", i, c.kind)
		}
		im.cols = append(im.cols, c)
	}
	return nil
}

// decodeRouted parses a routed record into r, reusing r's column slices.
// It never panics on malformed input (fuzzed).
func decodeRouted(b []byte, r *routed) error {
	if len(b) < 2 {
		return errRoutedShort
	}
	if b[0] != routedVersion {
		return fmt.Errorf("routed record: version %d, want %d", b[0], routedVersion)
	}
	flags := b[1]
	if flags&^(flagAdd|flagUpdate|flagRetract|flagPos) != 0 {
		return fmt.Errorf("routed record: unknown flags %#x", flags)
	}
	if flags&(flagAdd|flagRetract) == 0 {
		return errors.New("routed record: no row image")
	}
	r.hasAdd, r.update, r.hasRetract, r.hasPos = flags&flagAdd != 0, flags&flagUpdate != 0, flags&flagRetract != 0, flags&flagPos != 0
	rd := routedReader{b: b, p: 2}
	var err error
	if r.view, err = rd.bytes("view"); err != nil {
		return err
	}
	if len(r.view) == 0 {
		return errors.New("routed record: view is empty")
	}
	if r.entity, err = rd.bytes("entity"); err != nil {
		return err
	}
	if len(r.entity) == 0 {
		return errors.New("routed record: entity is empty")
	}
	if r.srcTopic, err = rd.bytes("source topic"); err != nil {
		return err
	}
	if r.srcPart, err = rd.varint("source partition"); err != nil {
		return err
	}
	if r.srcPart < 0 || r.srcPart > math.MaxInt32 {
		return fmt.Errorf("routed record: source partition %d out of range", r.srcPart)
	}
	if r.srcOffset, err = rd.varint("source offset"); err != nil {
		return err
	}
	if len(b)-rd.p < 4 {
		return errRoutedShort
	}
	r.layout = binary.LittleEndian.Uint32(b[rd.p:])
	rd.p += 4
	r.pos = cdc.Position{}
	if r.hasPos {
		if r.pos.CommitLSN, err = rd.uvarint("commit LSN"); err != nil {
			return err
		}
		if r.pos.LSN, err = rd.uvarint("LSN"); err != nil {
			return err
		}
	}
	if r.hasRetract {
		if err := rd.image(&r.retract); err != nil {
			return err
		}
	}
	if r.hasAdd {
		if err := rd.image(&r.add); err != nil {
			return err
		}
	}
	if rd.p != len(b) {
		return errors.New("routed record: trailing bytes")
	}
	return nil
}

func layoutOf(cols []string) uint32 {
	h := uint32(fnvOffset)
	for _, c := range cols {
		h = fnvString(h, c)
		h *= fnvPrime // a 0 byte between names
	}
	return h
}
