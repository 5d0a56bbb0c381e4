// Command app is the workload of `make e2e`'s Pods, one static binary behind
// three images (hack/e2e/images.sh), chosen by the name it runs as:
//   - pause: the sandbox (pause) container; it waits for a signal.
//   - app backend: the service behind the gateway Pod's nginx; it answers
//     with the user and key ID the gateway learnt from keymint.
//   - app client: a workload that mounts a key's Secret; every 100 ms it reads
//     the key from the mounted file and calls the gateway with it, and serves
//     what it saw on /status for the tests.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if filepath.Base(os.Args[0]) == "pause" {
		<-ctx.Done()
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: app backend|client [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "backend":
		err = backend(ctx, os.Args[2:])
	case "client":
		err = client(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want backend or client", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Answer is what the backend returns: whom the gateway let in.
type Answer struct {
	User  string `json:"user"`
	KeyID string `json:"keyID"`
}

func backend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to serve on")
	_ = fs.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Answer{User: r.Header.Get("X-Keymint-User"), KeyID: r.Header.Get("X-Keymint-Key-Id")})
	})
	return serve(ctx, *listen, mux)
}

// Status is what the client serves on /status.
type Status struct {
	// FileKeyID is the key ID in the mounted Secret now.
	FileKeyID string `json:"fileKeyID"`
	// Accepted counts the requests the gateway let through, by the key ID
	// keymint named; Refused counts the others, by the mounted key ID.
	Accepted map[string]int `json:"accepted"`
	Refused  map[string]int `json:"refused"`
	// LastError is the last request that failed below HTTP.
	LastError string `json:"lastError,omitempty"`
}

func client(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	listen := fs.String("listen", ":8081", "address to serve /status on")
	dir := fs.String("key-dir", "/keys", "the mounted Secret")
	url := fs.String("gateway", "", "the gateway's URL")
	_ = fs.Parse(args)
	if *url == "" {
		return fmt.Errorf("client: --gateway is required")
	}
	var mu sync.Mutex
	st := Status{Accepted: map[string]int{}, Refused: map[string]int{}}
	go func() {
		hc := &http.Client{Timeout: 2 * time.Second}
		for t := time.NewTicker(100 * time.Millisecond); ; {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			key, _ := os.ReadFile(filepath.Join(*dir, "api-key"))
			id, _ := os.ReadFile(filepath.Join(*dir, "key-id"))
			ans, code, err := call(ctx, hc, *url, strings.TrimSpace(string(key)))
			mu.Lock()
			st.FileKeyID = strings.TrimSpace(string(id))
			switch {
			case err != nil:
				st.LastError = err.Error()
			case code == http.StatusOK:
				st.Accepted[ans.KeyID]++
			default:
				st.Refused[st.FileKeyID]++
			}
			mu.Unlock()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	return serve(ctx, *listen, mux)
}

func call(ctx context.Context, hc *http.Client, url, key string) (Answer, int, error) {
	var ans Answer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ans, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return ans, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&ans)
	}
	return ans, resp.StatusCode, err
}

func serve(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}
