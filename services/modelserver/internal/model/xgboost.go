package model

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// XGBoost evaluates an XGBoost gbtree model saved as JSON (Booster.save_model("model.json")),
// written here because github.com/dmitryikh/leaves cannot read current XGBoost.
// Like XGBoost it compares feature values as float32 against float32 split
// conditions, sends missing (NaN) values the tree's default way, and sums
// leaf values onto the base margin.
type XGBoost struct {
	nodes      []xgbNode // all trees, flattened
	roots      []int32   // each tree's root index into nodes
	nFeatures  int
	baseMargin float64
	logistic   bool
	// featureIdx maps the model's feature index to the config input index.
	featureIdx []int
}

// xgbNode is 16 bytes, so four share a cache line.
type xgbNode struct {
	left, right int32 // absolute indexes; left < 0 marks a leaf
	// threshold is the split condition, or the leaf value of a leaf.
	threshold   float32
	feature     uint16
	defaultLeft bool
}

type xgbFile struct {
	Learner struct {
		FeatureNames []string `json:"feature_names"`
		Booster      struct {
			Name  string `json:"name"`
			Model struct {
				Trees    []xgbTree `json:"trees"`
				TreeInfo []int     `json:"tree_info"`
			} `json:"model"`
		} `json:"gradient_booster"`
		Param struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
	} `json:"learner"`
}

type xgbTree struct {
	Left        []int32   `json:"left_children"`
	Right       []int32   `json:"right_children"`
	SplitIdx    []int32   `json:"split_indices"`
	SplitCond   []float64 `json:"split_conditions"`
	DefaultLeft []int     `json:"default_left"`
	SplitType   []int     `json:"split_type"`
}

// LoadXGBoost loads <version>/model.json written by XGBoost's save_model.
func LoadXGBoost(cfg *Config, dir string) (Scorer, error) {
	path := filepath.Join(dir, "model.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseXGBoost(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseXGBoost parses an XGBoost JSON model for cfg's inputs.
func ParseXGBoost(data []byte, cfg *Config) (*XGBoost, error) {
	var f xgbFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	l := f.Learner
	if l.Booster.Name != "gbtree" {
		return nil, fmt.Errorf("learner.gradient_booster.name: %q; only gbtree is supported", l.Booster.Name)
	}
	if nc, _ := strconv.Atoi(l.Param.NumClass); nc > 1 {
		return nil, fmt.Errorf("learner.learner_model_param.num_class: %d; multi-class models are not supported", nc)
	}
	m := &XGBoost{}
	switch l.Objective.Name {
	case "binary:logistic", "reg:logistic":
		m.logistic = true
	case "binary:logitraw", "reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:pseudohubererror":
	default:
		return nil, fmt.Errorf("learner.objective.name: %q is not supported (binary:logistic, binary:logitraw, reg:logistic, reg:squarederror)", l.Objective.Name)
	}
	base, err := strconv.ParseFloat(strings.Trim(l.Param.BaseScore, "[] "), 64)
	if err != nil {
		return nil, fmt.Errorf("learner.learner_model_param.base_score: %q: %w", l.Param.BaseScore, err)
	}
	m.baseMargin = base
	if m.logistic {
		if !(base > 0 && base < 1) {
			return nil, fmt.Errorf("learner.learner_model_param.base_score: %v is not a probability", base)
		}
		m.baseMargin = math.Log(base / (1 - base))
	}
	if m.nFeatures, err = strconv.Atoi(l.Param.NumFeature); err != nil {
		return nil, fmt.Errorf("learner.learner_model_param.num_feature: %q: %w", l.Param.NumFeature, err)
	}
	// Features map to inputs by name when the model has names, else by position.
	m.featureIdx = make([]int, m.nFeatures)
	inputIdx := map[string]int{}
	for i, in := range cfg.Inputs {
		inputIdx[in.Name] = i
	}
	for j := range m.featureIdx {
		if len(l.FeatureNames) == m.nFeatures {
			i, ok := inputIdx[l.FeatureNames[j]]
			if !ok {
				return nil, fmt.Errorf("learner.feature_names[%d]: %q is no input in config.yaml", j, l.FeatureNames[j])
			}
			m.featureIdx[j] = i
		} else {
			if j >= len(cfg.Inputs) {
				return nil, fmt.Errorf("learner.learner_model_param.num_feature: %d features, config.yaml has %d inputs", m.nFeatures, len(cfg.Inputs))
			}
			m.featureIdx[j] = j
		}
	}
	for ti, t := range l.Booster.Model.Trees {
		n := len(t.Left)
		if n == 0 || len(t.Right) != n || len(t.SplitIdx) != n || len(t.SplitCond) != n || len(t.DefaultLeft) != n {
			return nil, fmt.Errorf("trees[%d]: node arrays of different lengths", ti)
		}
		off := int32(len(m.nodes))
		m.roots = append(m.roots, off)
		for i := range n {
			if len(t.SplitType) == n && t.SplitType[i] != 0 && t.Left[i] >= 0 {
				return nil, fmt.Errorf("trees[%d] node %d: categorical splits are not supported", ti, i)
			}
			nd := xgbNode{left: -1, right: -1}
			if t.Left[i] >= 0 {
				if t.Left[i] >= int32(n) || t.Right[i] < 0 || t.Right[i] >= int32(n) || t.Left[i] <= int32(i) || t.Right[i] <= int32(i) {
					return nil, fmt.Errorf("trees[%d] node %d: child index out of range", ti, i)
				}
				if t.SplitIdx[i] < 0 || int(t.SplitIdx[i]) >= m.nFeatures || m.featureIdx[t.SplitIdx[i]] > math.MaxUint16 {
					return nil, fmt.Errorf("trees[%d] node %d: split feature %d out of range", ti, i, t.SplitIdx[i])
				}
				nd.left, nd.right = off+t.Left[i], off+t.Right[i]
				nd.feature = uint16(m.featureIdx[t.SplitIdx[i]])
				nd.threshold = float32(t.SplitCond[i])
				nd.defaultLeft = t.DefaultLeft[i] != 0
			} else {
				nd.threshold = float32(t.SplitCond[i])
			}
			m.nodes = append(m.nodes, nd)
		}
	}
	if len(m.roots) == 0 {
		return nil, fmt.Errorf("learner.gradient_booster.model.trees: empty")
	}
	return m, nil
}

// Trees is the number of trees.
func (m *XGBoost) Trees() int { return len(m.roots) }

// Score implements Scorer.
func (m *XGBoost) Score(_ context.Context, x []float64, width int, out []float64) error {
	if width < m.nFeatures {
		return fmt.Errorf("xgboost model has %d features, got %d inputs", m.nFeatures, width)
	}
	// XGBoost compares in float32: convert each row once, not at every split.
	var buf [64]float32
	row32 := buf[:0]
	if width > len(buf) {
		row32 = make([]float32, 0, width)
	}
	for r := range out {
		row32 = row32[:0]
		for _, v := range x[r*width : (r+1)*width] {
			row32 = append(row32, float32(v))
		}
		out[r] = m.predictRow(row32)
	}
	return nil
}

func (m *XGBoost) predictRow(row []float32) float64 {
	var sum float32
	nodes := m.nodes
	for _, root := range m.roots {
		i := root
		for {
			nd := &nodes[i]
			if nd.left < 0 {
				sum += nd.threshold
				break
			}
			v := row[nd.feature]
			switch {
			case v != v: // missing (NaN)
				if nd.defaultLeft {
					i = nd.left
				} else {
					i = nd.right
				}
			case v < nd.threshold:
				i = nd.left
			default:
				i = nd.right
			}
		}
	}
	z := float64(sum) + m.baseMargin
	if m.logistic {
		return Sigmoid(z)
	}
	return z
}
