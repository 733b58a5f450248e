// Command echo is the test bed's workload image: an HTTP server that answers with the pod's
// host name, so tests can see which replica a Service routed them to.
// GET /healthz answers 200 unless the file named by $FAIL_READY_FILE exists (readiness tests).
// The image has no shell, so the binary also serves as the tests' tool inside pods:
//
//	echo get URL     prints the body of URL, fails on an error or a non-2xx status
//	echo touch FILE  creates FILE
//	echo rm FILE     removes FILE
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func tool(args []string) {
	var err error
	switch {
	case len(args) == 2 && args[0] == "get":
		client := http.Client{Timeout: 5 * time.Second}
		var resp *http.Response
		if resp, err = client.Get(args[1]); err == nil {
			defer resp.Body.Close()
			_, err = io.Copy(os.Stdout, resp.Body)
			if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
	case len(args) == 2 && args[0] == "touch":
		err = os.WriteFile(args[1], nil, 0o644)
	case len(args) == 2 && args[0] == "rm":
		err = os.Remove(args[1])
	default:
		err = fmt.Errorf("usage: echo [get URL | touch FILE | rm FILE]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func main() {
	if len(os.Args) > 1 {
		tool(os.Args[1:])
	}
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
