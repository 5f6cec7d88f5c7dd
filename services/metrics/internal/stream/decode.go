package stream

import (
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/tributary-ml/tributary/libs/predlog"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

// decoder decodes `predictions` records without reflection for the common
// shape and reuses its buffers; it hands anything unusual (escapes, nulls,
// unknown or repeated keys, invalid UTF-8) to encoding/json, so its results
// are encoding/json's (FuzzDecoder checks that). It is not safe for
// concurrent use.
//
// Features come out as a list (record order, names unique, interned), not
// a map: a feature name equal to the one at the same position in the
// previous record is taken from it without hashing, so a stream of one
// model's predictions (whose inputs the modelserver logs in one order)
// decodes without a map operation per feature.
type decoder struct {
	p      predlog.Prediction // Features stays nil; see feats
	feats  []core.Feature
	prev   []string // the previous record's feature names
	intern map[string]string
	// last holds the previous record's model, version, variant and role,
	// compared before hashing.
	last [4]string
}

// maxInterned bounds the interned strings (names of models, variants,
// features, error messages); beyond it strings are allocated.
const maxInterned = 10_000

func newDecoder() *decoder {
	return &decoder{intern: map[string]string{}}
}

func (d *decoder) str(b []byte) string {
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.intern) < maxInterned {
		d.intern[s] = s
	}
	return s
}

// strAt interns b, first comparing it with the previous value of slot.
func (d *decoder) strAt(slot int, b []byte) string {
	if string(b) == d.last[slot] {
		return d.last[slot]
	}
	s := d.str(b)
	d.last[slot] = s
	return s
}

// decode decodes b into the decoder's reused Prediction and feature list
// (valid until the next call; the Prediction's Features map is nil, the
// list holds them) and checks it like DecodePrediction.
func (d *decoder) decode(b []byte) (*predlog.Prediction, []core.Feature, error) {
	d.p = predlog.Prediction{Defaulted: d.p.Defaulted[:0]}
	d.feats = d.feats[:0]
	if !d.fast(b) {
		d.p = predlog.Prediction{}
		if err := DecodePrediction(b, &d.p); err != nil {
			return nil, nil, err
		}
		d.feats = d.feats[:0] // the fast path may have filled some before it gave up
		for _, n := range sortedNames(d.p.Features) {
			d.feats = append(d.feats, core.Feature{Name: d.str([]byte(n)), Value: d.p.Features[n]})
		}
		d.p.Features = nil
		return &d.p, d.feats, nil
	}
	if err := checkPrediction(&d.p); err != nil {
		return nil, nil, err
	}
	d.prev = d.prev[:0]
	for _, f := range d.feats {
		d.prev = append(d.prev, f.Name)
	}
	return &d.p, d.feats, nil
}

func sortedNames(m map[string]float64) []string { return slices.Sorted(maps.Keys(m)) }

// feature appends the feature named k (raw bytes) with value v; false
// means the record repeats a name (encoding/json keeps the last value:
// leave it to it). missed tells whether an earlier name of this record
// was not where the previous record had it, after which names must be
// checked against this record's earlier ones.
func (d *decoder) feature(k []byte, v float64, missed *bool) bool {
	i := len(d.feats)
	var name string
	if i < len(d.prev) && string(k) == d.prev[i] {
		name = d.prev[i]
	} else {
		*missed = true
		name = d.str(k)
	}
	if *missed {
		for _, f := range d.feats {
			if f.Name == name {
				return false
			}
		}
	}
	d.feats = append(d.feats, core.Feature{Name: name, Value: v})
	return true
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str scans a string without escapes and returns its bytes.
func (s *scanner) str() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			out := s.b[start:j]
			if !ascii && !utf8.Valid(out) {
				return nil, false
			}
			return out, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// number scans a JSON number; integer reports it has no fraction or exponent.
func (s *scanner) number() (raw []byte, integer bool, ok bool) {
	s.ws()
	start, j := s.i, s.i
	b := s.b
	digits := func() int {
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if digits() == 0 {
		return nil, false, false
	}
	integer = true
	if j < len(b) && b[j] == '.' {
		j++
		integer = false
		if digits() == 0 {
			return nil, false, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		integer = false
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, false, false
		}
	}
	s.i = j
	return b[start:j], integer, true
}

func (s *scanner) float() (float64, bool) {
	raw, _, ok := s.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// object scans {"k": v, ...}, calling field for each key with the scanner
// positioned at the value.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.next(':') || !field(k) {
			return false
		}
		if s.next(',') {
			continue
		}
		return s.next('}')
	}
}

const (
	fID = 1 << iota
	fModel
	fVersion
	fVariant
	fRole
	fEntityKeys
	fFeatures
	fDefaulted
	fOutputs
	fScore
	fLatency
	fError
	fTrace
	fTime
	fParent
)

// fieldBit names a record's key (0: unknown); a switch on the string
// costs no hashing.
func fieldBit(key []byte) int {
	switch string(key) {
	case "prediction_id":
		return fID
	case "model":
		return fModel
	case "version":
		return fVersion
	case "variant":
		return fVariant
	case "role":
		return fRole
	case "entity_keys":
		return fEntityKeys
	case "features":
		return fFeatures
	case "defaulted":
		return fDefaulted
	case "outputs":
		return fOutputs
	case "score":
		return fScore
	case "latency_ms":
		return fLatency
	case "error":
		return fError
	case "trace_id":
		return fTrace
	case "ts_ms":
		return fTime
	case "parent_id":
		return fParent
	}
	return 0
}

// fast decodes the common shape; false means "ask encoding/json".
func (d *decoder) fast(b []byte) bool {
	s := &scanner{b: b}
	p := &d.p
	seen := 0
	ok := s.object(func(key []byte) bool {
		bit := fieldBit(key)
		if bit == 0 || seen&bit != 0 {
			return false // encoding/json matches keys case-insensitively and merges repeats
		}
		seen |= bit
		switch bit {
		case fID, fModel, fVersion, fVariant, fRole, fError, fTrace, fParent:
			v, ok := s.str()
			if !ok {
				return false
			}
			switch bit {
			case fID:
				p.PredictionID = string(v)
			case fParent:
				p.ParentID = string(v)
			case fModel:
				p.Model = d.strAt(0, v)
			case fVersion:
				p.Version = d.strAt(1, v)
			case fVariant:
				p.Variant = d.strAt(2, v)
			case fRole:
				p.Role = d.strAt(3, v)
			case fError:
				p.Error = d.str(v)
			}
			return true
		case fScore:
			v, ok := s.float()
			p.Score = v
			return ok
		case fLatency:
			v, ok := s.float()
			p.LatencyMs = v
			return ok
		case fTime:
			raw, integer, ok := s.number()
			if !ok || !integer {
				return false
			}
			v, err := strconv.ParseInt(string(raw), 10, 64)
			p.TimeMs = v
			return err == nil
		case fFeatures:
			missed := false
			return s.object(func(k []byte) bool {
				v, ok := s.float()
				return ok && d.feature(k, v, &missed)
			})
		case fOutputs:
			return s.object(func([]byte) bool { _, ok := s.float(); return ok })
		case fEntityKeys:
			return s.object(func([]byte) bool { _, ok := s.str(); return ok })
		case fDefaulted:
			if !s.next('[') {
				return false
			}
			if s.next(']') {
				return true
			}
			for {
				v, ok := s.str()
				if !ok {
					return false
				}
				p.Defaulted = append(p.Defaulted, d.str(v))
				if s.next(',') {
					continue
				}
				return s.next(']')
			}
		}
		return false
	})
	s.ws()
	return ok && s.i == len(b)
}
