package core

import (
	"math"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// aggKind is an aggregation whose value is a number computed from an IR's
// counters, resolved once per requested feature.
type aggKind uint8

const (
	// aggOther is read through tiles.IR.Value.
	aggOther aggKind = iota
	aggCount
	aggSum
	aggAvg
	aggMin
	aggMax
	aggStddev
)

func aggOf(agg string) aggKind {
	switch agg {
	case featurespec.AggCount:
		return aggCount
	case featurespec.AggSum:
		return aggSum
	case featurespec.AggAvg:
		return aggAvg
	case featurespec.AggMin:
		return aggMin
	case featurespec.AggMax:
		return aggMax
	case featurespec.AggStddev:
		return aggStddev
	}
	return aggOther
}

// numericValue sets v to what tiles.IR.Value returns for the numeric
// aggregations, without boxing the number in an interface (an allocation
// per value, most of the values a request serves): a number, or Kind
// KindNone when there is none. It returns false, leaving v alone, for
// aggOther. aggvalue_test.go checks it against tiles.IR.Value.
func numericValue(v *Value, ir *tiles.IR, kind aggKind) bool {
	var x float64
	switch kind {
	case aggCount:
		x = float64(ir.Count)
	case aggSum:
		x = ir.Sum
	case aggAvg, aggMin, aggMax, aggStddev:
		if ir.NumCount == 0 {
			*v = Value{}
			return true
		}
		switch kind {
		case aggAvg:
			x = ir.Sum / float64(ir.NumCount)
		case aggMin:
			x = ir.Min
		case aggMax:
			x = ir.Max
		default:
			n := float64(ir.NumCount)
			mean := ir.Sum / n
			x = math.Sqrt(math.Max(0, ir.SumSq/n-mean*mean))
		}
	default:
		return false
	}
	*v = Value{Kind: KindDouble, Double: x}
	return true
}
