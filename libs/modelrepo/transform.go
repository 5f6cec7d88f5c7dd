package modelrepo

import (
	"errors"
	"math"
	"strconv"
)

// Raw is an input's value before its transform: a number or a string.
type Raw struct {
	Num   float64
	Str   string
	IsStr bool
}

// Num returns a numeric raw value.
func Num(v float64) Raw { return Raw{Num: v} }

// Str returns a string raw value.
func Str(s string) Raw { return Raw{Str: s, IsStr: true} }

// ErrNotNumeric is returned when a string reaches an input with no onehot transform.
var ErrNotNumeric = errors.New("string value for a numeric input")

// Apply transforms a raw value into the model's input.
func (in *Input) Apply(r Raw) (float64, error) {
	t := in.Transform
	if t != nil && t.Type == TransformOneHot {
		s := r.Str
		if !r.IsStr {
			s = strconv.FormatFloat(r.Num, 'f', -1, 64)
		}
		if s == t.Value {
			return 1, nil
		}
		return 0, nil
	}
	v := r.Num
	if r.IsStr {
		f, err := strconv.ParseFloat(r.Str, 64)
		if err != nil {
			return 0, ErrNotNumeric
		}
		v = f
	}
	return in.transformNum(v), nil
}

// ApplyDefault is the transformed declared default.
func (in *Input) ApplyDefault() float64 {
	if t := in.Transform; t != nil && t.Type == TransformOneHot {
		// The default of a onehot input is already the indicator value.
		return in.Default
	}
	return in.transformNum(in.Default)
}

func (in *Input) transformNum(v float64) float64 {
	t := in.Transform
	if t == nil {
		return v
	}
	switch t.Type {
	case TransformStandardize:
		return (v - t.Mean) / t.Std
	case TransformLog1p:
		if v <= -1 {
			return math.Inf(-1)
		}
		return math.Log1p(v)
	case TransformClip:
		if t.Min != nil && v < *t.Min {
			v = *t.Min
		}
		if t.Max != nil && v > *t.Max {
			v = *t.Max
		}
	}
	return v
}
