package main

import (
	"slices"
	"testing"
)

func pkg(path string, imports ...string) Package {
	return Package{ImportPath: path, Imports: imports}
}

func TestCheck(t *testing.T) {
	const (
		fsCore    = Repo + "/services/featureserver/internal/core"
		fsStore   = Repo + "/services/featureserver/internal/store/embedded"
		fsRoot    = Repo + "/services/featureserver"
		fzRoot    = Repo + "/services/featurizer"
		kafka     = Repo + "/libs/kafka"
		tiles     = Repo + "/libs/tiles"
		helper    = Repo + "/libs/featurespec"
		features  = Repo + "/proto/gen/go/tributary/features/v1"
		cli       = Repo + "/cmd/tributary"
		uuid      = "github.com/google/uuid"
		kafkaGo   = "github.com/segmentio/kafka-go"
		otherCore = Repo + "/services/modelserver/internal/core"
	)
	// dep makes a package that is only a dependency of the checked ones.
	dep := func(p Package) Package { p.DepOnly = true; return p }
	tests := []struct {
		name string
		pkgs []Package
		want []string
	}{
		{"a service imports libs, proto and itself", []Package{
			pkg(fsRoot, fsCore, fsStore, kafka, features, "fmt"),
		}, nil},
		{"a service imports another", []Package{
			pkg(fzRoot, fsRoot),
		}, []string{fzRoot + " imports " + fsRoot + ": services/featurizer may import only libs, proto and services/featurizer"}},
		{"a service's external test imports another service", []Package{
			pkg(fzRoot+"_test ["+fzRoot+".test]", fzRoot, fsRoot+"/internal/cqlserver"),
		}, []string{fzRoot + "_test imports " + fsRoot + "/internal/cqlserver: services/featurizer may import only libs, proto and services/featurizer"}},
		{"libs imports a service (in a test)", []Package{
			pkg(tiles+"_test ["+tiles+".test]", tiles, fsRoot),
		}, []string{tiles + "_test imports " + fsRoot + ": libs may import only libs and proto"}},
		{"proto imports libs", []Package{
			pkg(features, tiles),
		}, []string{features + " imports " + tiles + ": proto may import only proto"}},
		{"the CLI imports every service", []Package{
			pkg(cli, fsRoot, fzRoot),
		}, nil},
		{"a core imports an adapter", []Package{
			{ImportPath: fsCore, Imports: []string{kafka}, Deps: []string{kafka, kafkaGo, "net"}},
			dep(pkg(kafka, kafkaGo, "net")),
		}, []string{"core package " + fsCore + " depends on adapter " + kafka}},
		{"a core reaches an adapter through a package of the repository", []Package{
			{ImportPath: otherCore, Imports: []string{helper}, Deps: []string{helper, "net/http"}},
			dep(pkg(helper, "net/http")),
		}, []string{"core package " + otherCore + " depends on adapter net/http (through " + helper + ")"}},
		{"a third-party library's own imports are not the core's", []Package{
			{ImportPath: otherCore, Imports: []string{uuid, "net/url"}, Deps: []string{uuid, "net", "database/sql/driver", "net/url"}},
			dep(pkg(uuid, "net", "database/sql/driver")),
		}, nil},
		{"a core's tests may start servers", []Package{
			{ImportPath: fsCore + " [" + fsCore + ".test]", ForTest: fsCore, Imports: []string{"net"}, Deps: []string{"net"}},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Check(tt.pkgs); !slices.Equal(got, tt.want) {
				t.Errorf("Check =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestIsCore(t *testing.T) {
	for path, want := range map[string]bool{
		Repo + "/services/ingest/internal/core":        true,
		Repo + "/services/ingest/internal/core/sub":    true,
		Repo + "/services/ingest/internal/coreutil":    false,
		Repo + "/services/featurizer/internal/kafkaio": false,
		Repo + "/libs/aggregate":                       true,
		Repo + "/libs/kafka":                           false,
		"example.com/services/x/internal/core":         false,
	} {
		if got := IsCore(path); got != want {
			t.Errorf("IsCore(%s) = %v, want %v", path, got, want)
		}
	}
}
