// Command play serves the client test vectors (package clientvectors) for the JavaScript
// client's tests: it loads the vectors, listens on loopback and prints "listening <addr>" once it
// does. Clients connect to ws://<addr>/v/<vector>; GET /result/<vector> answers how its play
// went. It runs until killed.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/roomlog/roomlog/internal/clientvectors"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	dir := flag.String("dir", clientvectors.Dir, "the vectors' directory")
	flag.Parse()
	vectors, err := clientvectors.Load(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "play:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "play:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	fmt.Fprintln(os.Stderr, "play:", http.Serve(ln, clientvectors.NewPlayer(vectors)))
	os.Exit(1)
}
