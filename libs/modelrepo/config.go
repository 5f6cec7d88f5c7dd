// Package modelrepo is the model repository's contract: a model's
// config.yaml (inputs and where they come from, transforms, outputs,
// versions, experiments, ensembles). One parser for every reader: the
// modelserver (which evaluates the artifacts), the metrics service and
// the offline skew report.
package modelrepo

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Input sources.
const (
	SourceFeature = "feature" // fetched from the featureserver by entity key
	SourceRequest = "request" // sent with the call
)

// Transform types.
const (
	TransformStandardize = "standardize"
	TransformLog1p       = "log1p"
	TransformOneHot      = "onehot"
	TransformClip        = "clip"
)

// Outputs a model can declare.
const (
	OutputScore = "score"
	OutputLabel = "label"
)

// Config is a model's config.yaml.
type Config struct {
	Name   string  `yaml:"name"`
	Format string  `yaml:"format"`
	Inputs []Input `yaml:"inputs"`
	// Outputs are the outputs the model returns; "score" always, "label" (score ≥ threshold) optionally.
	Outputs   []string `yaml:"outputs"`
	Threshold *float64 `yaml:"threshold"`
	// EntityKeys optionally names the join keys the model's features need; when
	// empty they are learned from the featureserver's ListFeatureViews.
	EntityKeys []string `yaml:"entity_keys"`
	// FeatureTimeout bounds the feature fetch (default 100ms).
	FeatureTimeout Duration `yaml:"feature_timeout"`
	// VersionPolicy says which versions stay loaded.
	VersionPolicy VersionPolicy `yaml:"version_policy"`
	// Experiment splits traffic between variants.
	Experiment *Experiment `yaml:"experiment"`
	// Ensemble combines other models (format: ensemble).
	Ensemble *Ensemble `yaml:"ensemble"`
	// Remote forwards over the Open Inference Protocol (format: remote).
	Remote *Remote `yaml:"remote"`
}

// Input is one element of the model's feature vector.
type Input struct {
	Name string `yaml:"name"`
	// Feature is a featureserver reference "view:feature".
	Feature string `yaml:"feature"`
	// Source is "request" for request-time features; inputs with Feature set come from the featureserver.
	Source    string     `yaml:"source"`
	Default   float64    `yaml:"default"`
	Transform *Transform `yaml:"transform"`
}

// FromFeatureServer reports whether the input is fetched by entity key.
func (in Input) FromFeatureServer() bool { return in.Feature != "" }

// View is the feature view of a feature input.
func (in Input) View() string {
	v, _, _ := strings.Cut(in.Feature, ":")
	return v
}

// Transform turns a raw value into the model's input.
type Transform struct {
	Type string   `yaml:"type"`
	Mean float64  `yaml:"mean"`
	Std  float64  `yaml:"std"`
	Min  *float64 `yaml:"min"`
	Max  *float64 `yaml:"max"`
	// Value is the category an onehot input is 1 for.
	Value string `yaml:"value"`
}

// VersionPolicy is Triton's: the latest N versions (default 1), all, or specific ones.
// Versions an experiment names are loaded whatever the policy.
type VersionPolicy struct {
	Latest   int   `yaml:"latest"`
	All      bool  `yaml:"all"`
	Specific []int `yaml:"specific"`
}

// Experiment splits a model's traffic between variants.
type Experiment struct {
	// Variants share traffic by weight, sticky per entity (hash of the entity keys).
	Variants []Variant `yaml:"variants"`
	// Shadows run on every request and are logged, never returned.
	Shadows []Variant `yaml:"shadows"`
	// StickyKeys are the entity keys hashed to pick a variant; all entity keys when empty.
	StickyKeys []string `yaml:"sticky_keys"`
}

// Variant is one arm of an experiment: a version of this model or another model.
type Variant struct {
	Name    string  `yaml:"name"`
	Version int     `yaml:"version"`
	Model   string  `yaml:"model"`
	Weight  float64 `yaml:"weight"`
	// Canary marks the variant's predictions as canary in the log.
	Canary bool `yaml:"canary"`
}

// Ensemble combines member models' scores.
type Ensemble struct {
	// Combine is "average" (weighted average of scores) or "stacking" (a
	// logistic meta-model over member scores; weights in the version's model.json,
	// keyed by member name).
	Combine string   `yaml:"combine"`
	Members []Member `yaml:"members"`
	// Adaptive moves an average ensemble's weights towards the members that
	// did better recently, as the metrics service measures them.
	Adaptive *Adaptive `yaml:"adaptive"`
}

// Adaptive configures quality-driven ensemble weights: each member's share is
// floor + (1 - members·floor) · quality / Σ quality, where quality is the
// member's recent lift over chance (auc − 0.5, accuracy − 0.5, or ln 2 −
// log_loss, never below 0). Until every member has min_labeled labeled
// predictions in the window, the configured weights stay.
type Adaptive struct {
	Metric     string   `yaml:"metric"`
	Window     Duration `yaml:"window"`
	Floor      float64  `yaml:"floor"`
	MinLabeled int64    `yaml:"min_labeled"`
}

// Member is one model of an ensemble.
type Member struct {
	Name    string  `yaml:"name"`
	Model   string  `yaml:"model"`
	Version int     `yaml:"version"`
	Weight  float64 `yaml:"weight"`
}

// Remote is a model served elsewhere over the Open Inference Protocol.
type Remote struct {
	// Protocol is "grpc" (default) or "rest".
	Protocol string `yaml:"protocol"`
	// Addr is host:port (grpc) or a base URL (rest).
	Addr string `yaml:"addr"`
	// Model is the model name there (default: this model's name).
	Model string `yaml:"model"`
	// Version there (optional).
	Version string `yaml:"version"`
	// Input is the name of the FP32 [batch, n] input tensor (default "input").
	Input string `yaml:"input"`
	// Output is the name of the output tensor holding the score (default "score").
	Output  string   `yaml:"output"`
	Timeout Duration `yaml:"timeout"`
}

// Duration is a time.Duration read from YAML as "50ms".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 50ms", n.Value)
	}
	*d = Duration(v)
	return nil
}

// DefaultFeatureTimeout bounds a feature fetch when the model names none.
const DefaultFeatureTimeout = 100 * time.Millisecond

// Timeout is the feature fetch deadline.
func (c *Config) Timeout() time.Duration {
	if c.FeatureTimeout <= 0 {
		return DefaultFeatureTimeout
	}
	return time.Duration(c.FeatureTimeout)
}

// ParseConfig decodes and validates a config.yaml; errors name the field.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config.yaml: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config.yaml: %w", err)
	}
	return &c, nil
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	refRE  = regexp.MustCompile(`^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$`)
)

// Formats this package knows; "remote" needs a loader from outside.
var knownFormats = map[string]bool{"logistic": true, "linear": true, "xgboost": true, "lightgbm": true, "ensemble": true, "remote": true}

// Validate names the first bad field.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("name: %q is not a model name (letters, digits, _ . -)", c.Name)
	}
	if !knownFormats[c.Format] {
		return fmt.Errorf("format: %q is not one of logistic, linear, xgboost, lightgbm, ensemble, remote", c.Format)
	}
	if c.Format != "ensemble" && len(c.Inputs) == 0 {
		return errors.New("inputs: a model needs at least one input")
	}
	seen := map[string]bool{}
	for i := range c.Inputs {
		in := &c.Inputs[i]
		field := fmt.Sprintf("inputs[%d]", i)
		if !nameRE.MatchString(in.Name) {
			return fmt.Errorf("%s.name: %q is not an input name", field, in.Name)
		}
		field = fmt.Sprintf("inputs[%d] (%s)", i, in.Name)
		if seen[in.Name] {
			return fmt.Errorf("%s.name: duplicate input", field)
		}
		seen[in.Name] = true
		switch {
		case in.Feature != "" && in.Source != "" && in.Source != SourceFeature:
			return fmt.Errorf("%s: give either feature or source: request, not both", field)
		case in.Feature != "":
			if !refRE.MatchString(in.Feature) {
				return fmt.Errorf("%s.feature: %q is not a reference view:feature", field, in.Feature)
			}
		case in.Source == SourceRequest:
		case in.Source == "":
			return fmt.Errorf("%s: needs feature: <view:feature> or source: request", field)
		default:
			return fmt.Errorf("%s.source: %q is not request", field, in.Source)
		}
		if math.IsNaN(in.Default) || math.IsInf(in.Default, 0) {
			return fmt.Errorf("%s.default: must be finite", field)
		}
		if t := in.Transform; t != nil {
			switch t.Type {
			case TransformStandardize:
				if !(t.Std > 0) || math.IsInf(t.Std, 0) {
					return fmt.Errorf("%s.transform.std: must be > 0, got %v", field, t.Std)
				}
			case TransformLog1p:
			case TransformOneHot:
				if t.Value == "" {
					return fmt.Errorf("%s.transform.value: onehot needs the category value", field)
				}
			case TransformClip:
				if t.Min == nil && t.Max == nil {
					return fmt.Errorf("%s.transform: clip needs min or max", field)
				}
				if t.Min != nil && t.Max != nil && *t.Min > *t.Max {
					return fmt.Errorf("%s.transform.min: %v is above max %v", field, *t.Min, *t.Max)
				}
			default:
				return fmt.Errorf("%s.transform.type: %q is not one of standardize, log1p, onehot, clip", field, t.Type)
			}
		}
	}
	if len(c.Outputs) == 0 {
		c.Outputs = []string{OutputScore}
	}
	if c.Threshold != nil && (*c.Threshold < 0 || *c.Threshold > 1) {
		return fmt.Errorf("threshold: %v is outside [0, 1]", *c.Threshold)
	}
	hasScore := false
	for i, o := range c.Outputs {
		switch o {
		case OutputScore:
			hasScore = true
		case OutputLabel:
			if c.Threshold == nil {
				return fmt.Errorf("outputs[%d]: label needs threshold", i)
			}
		default:
			return fmt.Errorf("outputs[%d]: %q is not one of score, label", i, o)
		}
	}
	if !hasScore {
		return errors.New("outputs: must include score")
	}
	for i, k := range c.EntityKeys {
		if k == "" {
			return fmt.Errorf("entity_keys[%d]: empty", i)
		}
	}
	if err := c.VersionPolicy.validate(); err != nil {
		return err
	}
	if c.Experiment != nil {
		if err := c.Experiment.validate(); err != nil {
			return err
		}
	}
	switch c.Format {
	case "ensemble":
		if c.Ensemble == nil {
			return errors.New("ensemble: format ensemble needs an ensemble section")
		}
		if err := c.Ensemble.validate(c.Name); err != nil {
			return err
		}
	case "remote":
		if c.Remote == nil || c.Remote.Addr == "" {
			return errors.New("remote.addr: format remote needs the address of an Open Inference Protocol server")
		}
		switch c.Remote.Protocol {
		case "", "grpc", "rest":
		default:
			return fmt.Errorf("remote.protocol: %q is not grpc or rest", c.Remote.Protocol)
		}
	}
	if c.Format != "ensemble" && c.Ensemble != nil {
		return errors.New("ensemble: only for format ensemble")
	}
	return nil
}

func (p VersionPolicy) validate() error {
	n := 0
	if p.Latest != 0 {
		n++
	}
	if p.All {
		n++
	}
	if len(p.Specific) > 0 {
		n++
	}
	if n > 1 {
		return errors.New("version_policy: give one of latest, all, specific")
	}
	if p.Latest < 0 {
		return fmt.Errorf("version_policy.latest: must be ≥ 1, got %d", p.Latest)
	}
	for i, v := range p.Specific {
		if v < 0 {
			return fmt.Errorf("version_policy.specific[%d]: negative version %d", i, v)
		}
	}
	return nil
}

func (e *Experiment) validate() error {
	if len(e.Variants) == 0 {
		return errors.New("experiment.variants: need at least one variant")
	}
	names := map[string]bool{}
	total := 0.0
	check := func(field string, v Variant) error {
		if !nameRE.MatchString(v.Name) {
			return fmt.Errorf("%s.name: %q is not a variant name", field, v.Name)
		}
		if names[v.Name] {
			return fmt.Errorf("%s.name: duplicate variant %q", field, v.Name)
		}
		names[v.Name] = true
		if v.Version < 0 {
			return fmt.Errorf("%s.version: negative", field)
		}
		if v.Model != "" && !nameRE.MatchString(v.Model) {
			return fmt.Errorf("%s.model: %q is not a model name", field, v.Model)
		}
		return nil
	}
	for i, v := range e.Variants {
		f := fmt.Sprintf("experiment.variants[%d]", i)
		if err := check(f, v); err != nil {
			return err
		}
		if !(v.Weight >= 0) || math.IsInf(v.Weight, 0) {
			return fmt.Errorf("%s.weight: must be ≥ 0", f)
		}
		total += v.Weight
	}
	if !(total > 0) {
		return errors.New("experiment.variants: weights must add up to more than 0")
	}
	for i, v := range e.Shadows {
		if err := check(fmt.Sprintf("experiment.shadows[%d]", i), v); err != nil {
			return err
		}
	}
	return nil
}

func (e *Ensemble) validate(self string) error {
	switch e.Combine {
	case "average", "stacking":
	default:
		return fmt.Errorf("ensemble.combine: %q is not average or stacking", e.Combine)
	}
	if len(e.Members) == 0 {
		return errors.New("ensemble.members: need at least one member")
	}
	names := map[string]bool{}
	total := 0.0
	for i := range e.Members {
		m := &e.Members[i]
		f := fmt.Sprintf("ensemble.members[%d]", i)
		if !nameRE.MatchString(m.Model) {
			return fmt.Errorf("%s.model: %q is not a model name", f, m.Model)
		}
		if m.Model == self {
			return fmt.Errorf("%s.model: an ensemble cannot contain itself", f)
		}
		if m.Name == "" {
			m.Name = m.Model
		}
		if names[m.Name] {
			return fmt.Errorf("%s.name: duplicate member %q", f, m.Name)
		}
		names[m.Name] = true
		if !(m.Weight >= 0) || math.IsInf(m.Weight, 0) {
			return fmt.Errorf("%s.weight: must be ≥ 0", f)
		}
		total += m.Weight
	}
	if e.Combine == "average" && !(total > 0) {
		return errors.New("ensemble.members: weights must add up to more than 0")
	}
	if a := e.Adaptive; a != nil {
		if e.Combine != "average" {
			return errors.New("ensemble.adaptive: only for combine: average")
		}
		switch a.Metric {
		case "":
			a.Metric = "auc"
		case "auc", "accuracy", "log_loss":
		default:
			return fmt.Errorf("ensemble.adaptive.metric: %q is not auc, accuracy or log_loss", a.Metric)
		}
		if a.Window <= 0 {
			a.Window = Duration(time.Hour)
		}
		if a.Floor < 0 || float64(len(e.Members))*a.Floor >= 1 {
			return fmt.Errorf("ensemble.adaptive.floor: %v; must be ≥ 0 and below 1/%d", a.Floor, len(e.Members))
		}
		if a.MinLabeled <= 0 {
			a.MinLabeled = 100
		}
	}
	return nil
}
