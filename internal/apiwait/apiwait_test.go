package apiwait

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/go-logr/logr/funcr"
	"k8s.io/utils/clock"
)

// TestARequestWaitsOutTheOutage: a POST sent while nothing listens goes
// through, with its body, once the server is back, and both moments are
// logged once.
func TestARequestWaitsOutTheOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	var logs strings.Builder
	refused := make(chan struct{}, 1)
	log := funcr.New(func(_, args string) {
		logs.WriteString(args + "\n")
		if strings.Contains(args, "refuses connections") {
			refused <- struct{}{}
		}
	}, funcr.Options{})
	rt := &Transport{Next: http.DefaultTransport, Outage: &Outage{Log: log, Clock: clock.RealClock{}}}
	c := &http.Client{Transport: rt}

	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		resp, err := c.Post("http://"+addr+"/x", "text/plain", bytes.NewReader([]byte("the body")))
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	// Once it has been refused, the server comes back.
	select {
	case <-refused:
	case <-time.After(5 * time.Second):
		t.Fatal("the outage was not logged")
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the request failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not go through once the server was back")
	}
	if b := <-got; b != "the body" {
		t.Errorf("the server got %q", b)
	}
	if n := strings.Count(logs.String(), "reconnected to the API server"); n != 1 {
		t.Errorf("reconnection logged %d times:\n%s", n, logs.String())
	}
}

// TestARequestGivesUpWithItsContext: the wait ends with the request's
// context.
func TestARequestGivesUpWithItsContext(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	_ = l.Close()
	rt := &Transport{Next: http.DefaultTransport, Outage: &Outage{Log: funcr.New(func(string, string) {}, funcr.Options{}), Clock: clock.RealClock{}}}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr, nil)
	start := time.Now()
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatal("a request to nothing succeeded")
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %s, want at the context's deadline", d)
	}
}

func TestTransient(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for err, want := range map[error]bool{
		nil:                                  false,
		reset:                                true,
		fmt.Errorf("loading: %w", reset):     true,
		apierrors.NewServiceUnavailable("x"): true,
		apierrors.NewTooManyRequests("x", 1): true,
		apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"):                 false,
		apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "x", errors.New("no")): false,
		errors.New("the APIKey CRD is not installed"):                                            false,
	} {
		if got := Transient(err); got != want {
			t.Errorf("Transient(%v) = %v, want %v", err, got, want)
		}
	}
}
