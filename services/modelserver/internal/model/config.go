package model

import "github.com/tributary-ml/tributary/libs/modelrepo"

// The model repository's config.yaml is defined once, in libs/modelrepo
// (the metrics service and the offline skew report read it too); these
// names keep the evaluators' and the service's code short.

// Config types of libs/modelrepo.
type (
	Config        = modelrepo.Config
	Input         = modelrepo.Input
	Transform     = modelrepo.Transform
	VersionPolicy = modelrepo.VersionPolicy
	Experiment    = modelrepo.Experiment
	Variant       = modelrepo.Variant
	Ensemble      = modelrepo.Ensemble
	Adaptive      = modelrepo.Adaptive
	Member        = modelrepo.Member
	Remote        = modelrepo.Remote
	Duration      = modelrepo.Duration
	Raw           = modelrepo.Raw
)

// Raw values and errors of libs/modelrepo.
var (
	Num           = modelrepo.Num
	Str           = modelrepo.Str
	ErrNotNumeric = modelrepo.ErrNotNumeric
)

// Constants of libs/modelrepo.
const (
	SourceFeature         = modelrepo.SourceFeature
	SourceRequest         = modelrepo.SourceRequest
	TransformStandardize  = modelrepo.TransformStandardize
	TransformLog1p        = modelrepo.TransformLog1p
	TransformOneHot       = modelrepo.TransformOneHot
	TransformClip         = modelrepo.TransformClip
	OutputScore           = modelrepo.OutputScore
	OutputLabel           = modelrepo.OutputLabel
	DefaultFeatureTimeout = modelrepo.DefaultFeatureTimeout
)

// ParseConfig parses and validates a config.yaml (modelrepo.ParseConfig).
func ParseConfig(data []byte) (*Config, error) { return modelrepo.ParseConfig(data) }
