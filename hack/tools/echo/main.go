// Command echo is the test bed's workload image: an HTTP server that answers with the pod's
// host name, so tests can see which replica a Service routed them to.
// GET /healthz answers 200 unless the file named by $FAIL_READY_FILE exists (readiness tests).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	host, _ := os.Hostname()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if f := os.Getenv("FAIL_READY_FILE"); f != "" {
			if _, err := os.Stat(f); err == nil {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, host)
	})
	log.Printf("listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
