// Command tributary is the Tributary CLI: `tributary dev` runs the whole
// platform in one process on embedded defaults, `tributary kafka` runs the
// embedded Kafka broker alone, and `tributary <service>` runs one service
// with the same code and flags as its own binary.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/ingest"
	"github.com/tributary-ml/tributary/services/metrics"
	"github.com/tributary-ml/tributary/services/modelserver"
	"github.com/tributary-ml/tributary/services/offline"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func services() []service.Command {
	return []service.Command{ingest.Command(), featurizer.Command(), featureserver.Command(), modelserver.Command(), metrics.Command(), offline.Command()}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `tributary — a real-time ML platform

usage: tributary <command> [flags]

commands:
  dev            run everything in one process on embedded defaults (Ctrl-C stops)
  kafka          run the embedded Kafka broker alone
  train          train the fraud example model from demo data into examples/fraud/models
  features       feature view tools: features validate DIR
  training-set   a point-in-time training set from the offline archive (spine + features -> file)
  skew           the features a model was served against the same features computed offline
  import         load history (CSV/Parquet source rows) into the offline archive: import --topic T FILE
`)
	for _, c := range services() {
		fmt.Fprintf(w, "  %-14s %s\n", c.Name, c.Usage)
	}
	fmt.Fprint(w, "\n`tributary <command> -h` lists a command's flags.\n")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, rest := args[0], args[1:]
	for _, c := range services() {
		if c.Name == name {
			return service.Main(rest, stderr, c)
		}
	}
	switch name {
	case "dev":
		return devCommand(rest, stdout, stderr)
	case "kafka":
		return kafkaCommand(rest, stdout, stderr)
	case "train":
		return trainCommand(rest, stdout, stderr)
	case "features":
		return featuresCommand(rest, stdout, stderr)
	case "training-set":
		return trainingSetCommand(rest, stdout, stderr)
	case "skew":
		return skewCommand(rest, stdout, stderr)
	case "import":
		return importCommand(rest, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "tributary: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}
