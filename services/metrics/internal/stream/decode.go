package stream

import (
	"strconv"
	"unicode/utf8"

	"github.com/tributary-ml/tributary/libs/predlog"
)

// decoder decodes `predictions` records without reflection for the common
// shape and reuses its maps; it hands anything unusual (escapes, nulls,
// unknown or repeated keys, invalid UTF-8) to encoding/json, so its results
// are encoding/json's (FuzzDecoder checks that). It is not safe for
// concurrent use.
type decoder struct {
	p      predlog.Prediction
	intern map[string]string
}

// maxInterned bounds the interned strings (names of models, variants,
// features, error messages); beyond it strings are allocated.
const maxInterned = 10_000

func newDecoder() *decoder {
	return &decoder{intern: map[string]string{}, p: predlog.Prediction{Features: map[string]float64{}}}
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

// decode decodes b into the decoder's reused Prediction (valid until the
// next call) and checks it like DecodePrediction.
func (d *decoder) decode(b []byte) (*predlog.Prediction, error) {
	features := d.p.Features
	clear(features)
	defaulted := d.p.Defaulted[:0]
	d.p = predlog.Prediction{Features: features, Defaulted: defaulted}
	if !d.fast(b) {
		d.p = predlog.Prediction{}
		if err := DecodePrediction(b, &d.p); err != nil {
			d.p = predlog.Prediction{Features: features}
			return nil, err
		}
		if d.p.Features == nil {
			clear(features) // the fast path may have filled some before it gave up
			d.p.Features = features
		}
		return &d.p, nil
	}
	if err := checkPrediction(&d.p); err != nil {
		return nil, err
	}
	return &d.p, nil
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
)

var fieldBits = map[string]int{
	"prediction_id": fID, "model": fModel, "version": fVersion, "variant": fVariant, "role": fRole,
	"entity_keys": fEntityKeys, "features": fFeatures, "defaulted": fDefaulted, "outputs": fOutputs,
	"score": fScore, "latency_ms": fLatency, "error": fError, "trace_id": fTrace, "ts_ms": fTime,
}

// fast decodes the common shape; false means "ask encoding/json".
func (d *decoder) fast(b []byte) bool {
	s := &scanner{b: b}
	p := &d.p
	seen := 0
	ok := s.object(func(key []byte) bool {
		bit, known := fieldBits[string(key)]
		if !known || seen&bit != 0 {
			return false // encoding/json matches keys case-insensitively and merges repeats
		}
		seen |= bit
		switch bit {
		case fID, fModel, fVersion, fVariant, fRole, fError, fTrace:
			v, ok := s.str()
			if !ok {
				return false
			}
			switch bit {
			case fID:
				p.PredictionID = string(v)
			case fModel:
				p.Model = d.str(v)
			case fVersion:
				p.Version = d.str(v)
			case fVariant:
				p.Variant = d.str(v)
			case fRole:
				p.Role = d.str(v)
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
			return s.object(func(k []byte) bool {
				v, ok := s.float()
				if ok {
					p.Features[d.str(k)] = v
				}
				return ok
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
