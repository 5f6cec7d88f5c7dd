// Command featurizer runs the featurizer service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/featurizer"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, featurizer.Command()))
}
