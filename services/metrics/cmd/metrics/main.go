// Command metrics runs the metrics service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/metrics"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, metrics.Command()))
}
