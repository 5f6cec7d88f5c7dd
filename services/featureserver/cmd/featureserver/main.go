// Command featureserver runs the featureserver service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/featureserver"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, featureserver.Command()))
}
