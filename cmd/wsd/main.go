// Command wsd is a pre-forking HTTP and WebSocket server.
//
// Run "wsd serve" to start it and "wsd serve --help" for every setting.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
