package check

import (
	"flag"
	"net"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
	"github.com/tributary-ml/tributary/services/offline"
)

// serviceCode is what the code says about one service: its flags (a fresh
// set per call, bound to a fresh default configuration), how to validate
// the configuration they were parsed into, the topics it creates or only reads, and its
// default ports (DESIGN.md §4).
type serviceCode struct {
	name        string
	admin, grpc string // default ports; grpc "" when it serves none
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
	// reads returns the topics the service consumes without creating them
	// (nil: none beyond what it creates); each needs a KafkaTopic.
	reads func() ([]string, error)
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
		{name: "offline", admin: port(offline.DefaultConfig().Common.AdminAddr), grpc: port(offline.DefaultConfig().Common.GRPCAddr),
			nonFlagEnv: map[string]string{
				"AWS_ACCESS_KEY_ID":     "S3 credentials for gocloud.dev/blob (s3:// archive)",
				"AWS_SECRET_ACCESS_KEY": "S3 credentials for gocloud.dev/blob (s3:// archive)",
			},
			bind: func() boundConfig {
				c := offline.DefaultConfig()
				fs := newFlagSet("offline")
				c.RegisterFlags(fs)
				// The archiver creates no topics (it consumes, as group
				// tributary-offline): what it reads must exist.
				return boundConfig{flags: fs, validate: func() error { return c.Validate() },
					reads: func() ([]string, error) {
						views, err := featurespec.LoadDir(c.Features)
						if err != nil {
							return nil, err
						}
						return c.ArchivedTopics(views), nil
					},
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
