package core

import (
	"context"
	"slices"

	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// involved returns the models a request to e may run: e, its experiment's
// variants and shadows, and ensemble members, recursively.
func involved(snap *model.Set, e *model.Entry) []*model.Entry {
	var out []*model.Entry
	seen := map[string]bool{}
	var walk func(e *model.Entry, depth int)
	walk = func(e *model.Entry, depth int) {
		if e == nil || seen[e.Name] || depth > maxEnsembleDepth {
			return
		}
		seen[e.Name] = true
		out = append(out, e)
		if x := e.Config.Experiment; x != nil {
			for _, v := range append(slices.Clone(x.Variants), x.Shadows...) {
				if v.Model != "" {
					o, _ := snap.Get(v.Model)
					walk(o, depth)
				}
			}
		}
		if en := e.Config.Ensemble; en != nil {
			for _, m := range en.Members {
				o, _ := snap.Get(m.Model)
				walk(o, depth+1)
			}
		}
	}
	walk(e, 0)
	return out
}

// RequestInputs are the request-time inputs of every model a request to e may run.
func RequestInputs(snap *model.Set, e *model.Entry) map[string]bool {
	out := map[string]bool{}
	for _, m := range involved(snap, e) {
		for _, in := range m.Config.Inputs {
			if !in.FromFeatureServer() {
				out[in.Name] = true
			}
		}
	}
	return out
}

// EntityKeys are the join keys a request to e must carry, from the models'
// entity_keys or the featureserver's views; nil when they cannot be known now.
func (p *Predictor) EntityKeys(ctx context.Context, snap *model.Set, e *model.Entry) []string {
	pl := &plan{refIdx: map[string]int{}}
	for _, m := range involved(snap, e) {
		if ver, ok := m.Version(0); ok {
			_ = pl.add(snap, m, ver, 0)
		}
	}
	if len(pl.refs) == 0 {
		return nil
	}
	if !pl.undeclare {
		return pl.keys
	}
	jk, err := p.store.JoinKeys(ctx, pl.views)
	if err != nil {
		return nil
	}
	keys := pl.keys
	for _, v := range pl.views {
		for _, k := range jk[v] {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}
