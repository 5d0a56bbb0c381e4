package auditserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/keymint/keymint/internal/apiwait"
	"github.com/keymint/keymint/internal/audit"
)

// Paths the server serves.
const (
	// EventsPath receives kube-apiserver's audit webhook batches.
	EventsPath = "/audit/events"
	// ExportPath serves the audit trail to authorised administrators.
	ExportPath = audit.ExportPath
)

// Server is the manager's audit endpoint: an HTTPS server that takes
// kube-apiserver's audit webhook batches and serves exports. It runs on
// every replica (it is no controller), as a manager.Runnable.
type Server struct {
	// Addr is the address to listen on, e.g. ":9443".
	Addr string
	// CertFile and KeyFile are the serving certificate, reloaded when they
	// change.
	CertFile, KeyFile string
	// ClientCAFile, if set, authenticates the API server by its client
	// certificate; TokenFile, if set, by a bearer token. At least one is
	// needed to accept batches.
	ClientCAFile, TokenFile string
	// ClientNames are the common names of the client certificates accepted
	// from ClientCAFile: a CA often signs more clients than the API server,
	// and none of them may post audit batches.
	ClientNames []string

	// Trail takes the records; a batch is acknowledged only once Trail
	// returned, so it should be durable (an audit.File first).
	Trail audit.Writer
	// Log is the file exports read; nil refuses exports.
	Log *audit.File
	// Resolver tells which keys a request touched.
	Resolver Resolver
	// IgnoredUsers are the users whose requests are not recorded;
	// SetupWithManager adds the manager's own identity.
	IgnoredUsers []string
	// Events mirrors view records as Events; nil records none.
	Events EventMirror
	// Authorizer admits export callers.
	Authorizer Authorizer
	// Clock times the windows of refused reads and the resolver's
	// tombstones; the real clock when nil.
	Clock clock.WithTicker
	// RepeatWindow is how long an actor's repeated refusals, or repeated
	// views of one key, are counted into one record (see repeats);
	// RepeatWindow when zero.
	RepeatWindow time.Duration
	// ShutdownTimeout bounds the wait for requests in flight at shutdown.
	ShutdownTimeout time.Duration
	Logger          logr.Logger

	token   []byte
	repeats *audit.Aggregator
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews;selfsubjectreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// RepeatWindow is the default window of aggregated repeats.
const RepeatWindow = audit.RepeatWindow

// RequiredPermissions are what the audit endpoint cannot work without, as
// its RBAC markers grant them: delegated authentication and authorisation
// of export callers, and its own identity.
func RequiredPermissions() []authorizationv1.ResourceAttributes {
	return []authorizationv1.ResourceAttributes{
		{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"},
		{Group: "authentication.k8s.io", Resource: "selfsubjectreviews", Verb: "create"},
		{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"},
	}
}

// SetupWithManager completes s from mgr: the resolver over its cache, its
// own identity among the ignored users, delegated export authorisation and
// Events. It adds s to mgr.
func (s *Server) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	var err error
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	if s.Resolver == nil {
		if s.Resolver, err = NewCacheResolver(ctx, mgr.GetCache(), s.Clock); err != nil {
			return err
		}
	}
	var self string
	if err := apiwait.Retry(ctx, mgr.GetLogger(), "asking who the manager is", func() (err error) {
		self, err = Self(ctx, mgr.GetClient())
		return err
	}); err != nil {
		return err
	}
	s.IgnoredUsers = append(s.IgnoredUsers, self)
	if s.Authorizer == nil {
		s.Authorizer = Delegated{Client: mgr.GetClient()}
	}
	if s.Events == nil {
		s.Events = RecorderMirror{Recorder: mgr.GetEventRecorder("keymint-audit")}
	}
	s.Logger = mgr.GetLogger().WithName("audit")
	return mgr.Add(s)
}

// Self returns the username the manager's client acts as.
func Self(ctx context.Context, c client.Client) (string, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server who the manager is: %w", err)
	}
	return review.Status.UserInfo.Username, nil
}

func (s *Server) ignored(username string) bool { return slices.Contains(s.IgnoredUsers, username) }

// NeedLeaderElection is false: every replica takes the batches sent to it.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	if s.ClientCAFile != "" && len(s.ClientNames) == 0 {
		return fmt.Errorf("the audit webhook client CA needs the common names of the API server's client certificates (--audit-webhook-client-name)")
	}
	tlsConfig, err := s.tlsConfig(ctx)
	if err != nil {
		return err
	}
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	s.repeats = audit.NewAggregator(s.RepeatWindow)
	go s.repeats.Flush(ctx, s.Clock, s.Trail, s.Logger)
	if s.TokenFile != "" {
		raw, err := os.ReadFile(s.TokenFile)
		if err != nil {
			return fmt.Errorf("reading the audit webhook token: %w", err)
		}
		if s.token = []byte(strings.TrimSpace(string(raw))); len(s.token) == 0 {
			return fmt.Errorf("the audit webhook token file %s is empty", s.TokenFile)
		}
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+EventsPath, s.serveEvents)
	mux.HandleFunc("GET "+ExportPath, s.serveExport)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(resetListener{ln.(*net.TCPListener)}, tlsConfig)) }()
	s.Logger.Info("serving the audit webhook and export", "address", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	timeout := s.ShutdownTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Connections still busy are reset: the API server sends their
		// batches again.
		_ = srv.Close()
	}
	return nil
}

func (s *Server) tlsConfig(ctx context.Context) (*tls.Config, error) {
	watcher, err := certwatcher.New(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the audit server certificate: %w", err)
	}
	go func() {
		if err := watcher.Start(ctx); err != nil {
			s.Logger.Error(err, "watching the audit server certificate failed")
		}
	}()
	// HTTP/2 is off, as on the metrics endpoint: it is open to the Rapid
	// Reset and Stream Cancellation attacks, and batches do not need it.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: watcher.GetCertificate, NextProtos: []string{"http/1.1"}}
	if s.ClientCAFile != "" {
		raw, err := os.ReadFile(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the audit webhook client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("no certificate in the audit webhook client CA file %s", s.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// resetListener closes its connections with a reset (SO_LINGER 0). A
// manager stopped or killed while it holds a batch it has not acknowledged
// then resets the API server's connection, which the API server retries,
// instead of closing it cleanly, which it would take as a lost batch.
type resetListener struct{ *net.TCPListener }

func (l resetListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	if err := c.SetLinger(0); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// webhookCaller reports whether r comes from the API server: a client
// certificate verified by the client CA with one of the allowed common
// names, or the bearer token.
func (s *Server) webhookCaller(r *http.Request) bool {
	if s.ClientCAFile != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 &&
		slices.Contains(s.ClientNames, r.TLS.VerifiedChains[0][0].Subject.CommonName) {
		return true
	}
	token, ok := bearerToken(r)
	return ok && len(s.token) > 0 && subtle.ConstantTimeCompare([]byte(token), s.token) == 1
}

func bearerToken(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(token), ok && strings.TrimSpace(token) != ""
}

// refuse answers 401 and logs who was refused, never a credential.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why string) {
	s.Logger.Info("refused an audit request", "path", r.URL.Path, "remoteAddr", r.RemoteAddr, "userAgent", r.UserAgent(), "reason", why)
	http.Error(w, "Unauthorized", http.StatusUnauthorized)
}
