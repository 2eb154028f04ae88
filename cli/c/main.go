// Command c is Cell's command line client.
package main

import (
	"context"
	"os"

	"cell/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:]))
}
