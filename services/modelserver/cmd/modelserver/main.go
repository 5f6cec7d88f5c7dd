// Command modelserver runs the modelserver service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/modelserver"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, modelserver.Command()))
}
