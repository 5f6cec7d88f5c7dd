package check

import (
	"flag"
	"net"

	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
)

// serviceCode is what the code says about one service: its flags (a fresh
// set per call, bound to a fresh default configuration), how to validate
// the configuration they were parsed into, the topics it creates, and its
// default ports (DESIGN.md §4).
type serviceCode struct {
	name        string
	admin, grpc string // default ports; grpc "" when it serves none
	// fromDesign marks a service whose flags are taken from DESIGN.md §4
	// because its code does not register them yet.
	fromDesign bool
	// nonFlagEnv lists variables the service reads that are not flags.
	nonFlagEnv map[string]string
	bind       func() boundConfig
}

type boundConfig struct {
	flags    *flag.FlagSet
	validate func() error
	// topics returns the topics the service creates (nil: it creates none
	// or the code does not say yet).
	topics func() ([]kafka.TopicSpec, error)
	// paths are the flags naming files or directories, and what they hold.
	paths map[string]pathKind
}

type pathKind int

const (
	featureViews pathKind = iota + 1
	modelRepository
	secretFile
	writableDir
	archiveURL
)

func newFlagSet(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

func codeServices() []serviceCode {
	return []serviceCode{
		{name: "ingest", admin: port(ingest.DefaultConfig().Common.AdminAddr),
			nonFlagEnv: map[string]string{
				ingest.MaskKeyEnv: "the masking key itself (deploy/k8s uses --mask-key-file)",
				"PGPASSWORD":      "libpq's password variable, read by pgx when the DSN has none",
			},
			bind: func() boundConfig {
				c := ingest.DefaultConfig()
				fs := newFlagSet("ingest")
				c.RegisterFlags(fs)
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					topics: func() ([]kafka.TopicSpec, error) { return c.Topics() },
					paths:  map[string]pathKind{"mask-key-file": secretFile}}
			}},
		{name: "featurizer", admin: port(featurizer.DefaultConfig().Common.AdminAddr),
			bind: func() boundConfig {
				c := featurizer.DefaultConfig()
				fs := newFlagSet("featurizer")
				c.RegisterFlags(fs)
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					topics: func() ([]kafka.TopicSpec, error) {
						views, err := featurespec.LoadDir(c.Features)
						if err != nil {
							return nil, err
						}
						return c.Topics(views), nil
					},
					paths: map[string]pathKind{"features": featureViews}}
			}},
		{name: "featureserver", admin: port(featureserver.DefaultConfig().Common.AdminAddr), grpc: port(featureserver.DefaultConfig().Common.GRPCAddr),
			bind: func() boundConfig {
				c := featureserver.DefaultConfig()
				fs := newFlagSet("featureserver")
				c.RegisterFlags(fs)
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					topics: func() ([]kafka.TopicSpec, error) { return c.Topics(), nil },
					paths:  map[string]pathKind{"features": featureViews, "data-dir": writableDir}}
			}},
		{name: "modelserver", admin: port(modelserver.DefaultConfig().Common.AdminAddr), grpc: port(modelserver.DefaultConfig().Common.GRPCAddr),
			bind: func() boundConfig {
				c := modelserver.DefaultConfig()
				fs := newFlagSet("modelserver")
				c.RegisterFlags(fs)
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					paths: map[string]pathKind{"models": modelRepository}}
			}},
		{name: "metrics", admin: port(metrics.DefaultConfig().Common.AdminAddr), grpc: port(metrics.DefaultConfig().Common.GRPCAddr),
			bind: func() boundConfig {
				c := metrics.DefaultConfig()
				fs := newFlagSet("metrics")
				c.RegisterFlags(fs)
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					topics: func() ([]kafka.TopicSpec, error) { return c.Topics(), nil },
					paths:  map[string]pathKind{"models": modelRepository}}
			}},
		// services/offline does not register its flags yet (it is being
		// written): these are DESIGN.md §4's (shared flags, --features,
		// --offline, --topics; gRPC 9104, admin 8086). Replace this entry by
		// offline.DefaultConfig/RegisterFlags/Validate/Topics once they exist.
		{name: "offline", admin: "8086", grpc: "9104", fromDesign: true,
			nonFlagEnv: map[string]string{
				"AWS_ACCESS_KEY_ID":     "S3 credentials for gocloud.dev/blob (s3:// archive)",
				"AWS_SECRET_ACCESS_KEY": "S3 credentials for gocloud.dev/blob (s3:// archive)",
			},
			bind: func() boundConfig {
				c := config.Common{KafkaBrokers: "127.0.0.1:9092", AdminAddr: "127.0.0.1:8086", GRPCAddr: "127.0.0.1:9104", LogLevel: "info"}
				fs := newFlagSet("offline")
				c.Register(fs, true)
				fs.String("features", "examples/fraud/features", "directory of feature view YAML files")
				fs.String("offline", "file://data/offline", "archive URL (file:// or s3://)")
				fs.String("topics", "", "extra topics to archive")
				return boundConfig{flags: fs, validate: func() error { return c.Validate(true) },
					paths: map[string]pathKind{"features": featureViews, "offline": archiveURL}}
			}},
	}
}

func port(addr string) string {
	if addr == "" {
		return ""
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	return p
}
