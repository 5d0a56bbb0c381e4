package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/keymint/keymint/internal/metrics"
)

// VerifyPath is the forward-auth path: any method on it, or on any path
// under it, asks about the key the request carries.
const VerifyPath = "/verify"

// Handler serves forward auth: 200 with the key's identity headers, or 401
// with a JSON body {"reason": ...}. The scope comes from the URL the
// gateway is configured with, never from a header a client could set.
func (v *Verifier) Handler() http.Handler {
	mux := http.NewServeMux()
	duration := metrics.VerifyDuration.WithLabelValues("http")
	serve := func(w http.ResponseWriter, r *http.Request) {
		start := v.Clock.Now()
		defer func() { duration.Observe(v.Clock.Since(start).Seconds()) }()
		caller := Caller{Address: firstHop(r.Header.Get("X-Forwarded-For")), UserAgent: r.UserAgent()}
		if caller.Address == "" {
			caller.Address, _, _ = net.SplitHostPort(r.RemoteAddr)
		}
		// The names are in canonical form already: set without Set's
		// canonicalisation, on every request.
		h := w.Header()
		h["Cache-Control"] = noStore
		scope, ok := ParseScope(r.URL.Path)
		if !ok {
			h["Content-Type"] = textType
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, UnknownPathMessage)
			return
		}
		verdict := v.Verify(r.Context(), presentedKey(r.Header.Get("Authorization"), r.Header.Get(HeaderAPIKey)), scope, caller)
		if verdict.Valid() {
			identity(verdict, func(name, value string) { h[name] = []string{value} })
			w.WriteHeader(http.StatusOK)
			return
		}
		h["Www-Authenticate"] = []string{challengeFor(verdict.Reason)}
		h["Content-Type"] = jsonType
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write(refusal(verdict.Reason))
	}
	mux.HandleFunc(VerifyPath, serve)
	mux.HandleFunc(VerifyPath+"/", serve)
	return mux
}

// The challenges of a refusal (RFC 6750, section 3.1): a request that
// presented no key gets no error code, one that presented a bad key gets
// invalid_token.
const (
	challengeMissing = `Bearer realm="keymint"`
	challengeInvalid = `Bearer realm="keymint", error="invalid_token"`
)

func challengeFor(r Reason) string {
	if r == ReasonMissing {
		return challengeMissing
	}
	return challengeInvalid
}

// Header values every response shares; never changed.
var (
	noStore  = []string{"no-store"}
	jsonType = []string{"application/json"}
	textType = []string{"text/plain; charset=utf-8"}
)

// refusal is the JSON body of a 401.
func refusal(r Reason) []byte { return []byte(`{"reason":"` + string(r) + `"}`) }

// HTTPServer serves Handler on every replica, as a manager Runnable: it
// answers from the cache, which every replica has.
type HTTPServer struct {
	Addr     string
	CertFile string
	KeyFile  string
	Verifier *Verifier
	Log      logr.Logger
}

// NeedLeaderElection is false: every replica verifies.
func (s *HTTPServer) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *HTTPServer) Start(ctx context.Context) error {
	srv := &http.Server{
		Addr:              s.Addr,
		Handler:           s.Verifier.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	if err := s.Verifier.waitForSync(ctx); err != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	if s.CertFile != "" {
		watcher, err := certwatcher.New(s.CertFile, s.KeyFile)
		if err != nil {
			return err
		}
		go func() { _ = watcher.Start(ctx) }()
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: watcher.GetCertificate, MinVersion: tls.VersionTLS12})
	}
	s.Log.Info("serving key verification", "address", ln.Addr().String(), "tls", s.CertFile != "")
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
