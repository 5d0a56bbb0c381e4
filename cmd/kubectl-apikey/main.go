// Command kubectl-apikey is the kubectl plugin of keymint: `kubectl apikey`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/keymint/keymint/internal/cli"
)

func main() {
	os.Exit(cli.Execute(&cli.Options{
		Streams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	}, os.Args[1:]))
}
