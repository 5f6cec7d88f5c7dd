// Command ingest runs the ingest service.
package main

import (
	"os"

	"github.com/tributary-ml/tributary/libs/service"
	"github.com/tributary-ml/tributary/services/ingest"
)

func main() {
	os.Exit(service.Main(os.Args[1:], os.Stderr, ingest.Command()))
}
