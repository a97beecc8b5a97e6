// The classic Go hello server, as the benchmark's baseline: net/http from the standard library,
// nothing tuned. Only the address is a flag, so that the benchmark can pick a loopback port.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", ":8080", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Hello, World!")
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
