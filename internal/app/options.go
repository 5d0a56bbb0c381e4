// Package app builds keymint's manager from its options: the one wiring
// that main and every end-to-end test suite use (cert-manager's
// cmd/controller/app is the model). Options holds the flags, with AddFlags
// and Validate; New builds the manager with the controller, the verifier,
// the audit endpoint, metrics and probes.
package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/apicerts"
	"github.com/keymint/keymint/internal/auditapi"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/auditstore"
	"github.com/keymint/keymint/internal/verify"
)

// Options are the manager's settings, one field a flag.
type Options struct {
	MetricsAddr, ProbeAddr, PprofAddr string
	SecureMetrics                     bool

	LeaderElect    bool
	LeaderIdentity string

	MaxKeysPerUser int
	SlotNamespace  string
	Concurrency    int
	AccessRecheck  time.Duration
	ExpiryWarning  time.Duration

	// AuditStore is where the trail is kept durably: AuditStoreAPI, or
	// AuditStoreLog (the audit log at AuditPath, if any).
	AuditStore string
	// AuditRetention is how long the API server keeps records.
	AuditRetention time.Duration
	// AuditPath is the audit log; empty keeps records on stdout only.
	AuditPath                    string
	AuditMaxMiB, AuditMaxBackups int
	// Audit is the audit endpoint; its Addr "0" or "" turns it off.
	Audit auditserver.Server

	Verify verify.Options
	// API is keymint's aggregated API, audit.keymint.io.
	API auditapi.Options

	QPS   float64
	Burst int
}

// NewOptions are the defaults, those --help shows.
func NewOptions() *Options {
	return &Options{
		MetricsAddr:     "0",
		ProbeAddr:       ":8081",
		PprofAddr:       "0",
		SecureMetrics:   true,
		LeaderIdentity:  os.Getenv("POD_NAME"),
		MaxKeysPerUser:  2,
		SlotNamespace:   envOr("POD_NAMESPACE", "keymint-system"),
		Concurrency:     32,
		AccessRecheck:   controllers.DefaultAccessRecheck,
		ExpiryWarning:   controllers.DefaultExpiryWarning,
		AuditStore:      AuditStoreAPI,
		AuditRetention:  auditstore.DefaultRetention,
		AuditMaxMiB:     100,
		AuditMaxBackups: 10,
		Audit:           auditserver.Server{Addr: "0"},
		API:             auditapi.Options{BindAddress: "0", Service: "keymint-api"},
		Verify: verify.Options{
			HTTPAddr:         ":8082",
			GRPCAddr:         ":9001",
			LastUsedInterval: verify.DefaultLastUsedInterval,
		},
		QPS:   500,
		Burst: 1000,
	}
}

// AddFlags defines the manager's flags on fs, with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "The address the metrics endpoint binds to. Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "The address the probe endpoint binds to.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "The address of Go's /debug/pprof endpoints (profiling; unauthenticated, so keep it on localhost). 0 disables them.")
	fs.BoolVar(&o.SecureMetrics, "metrics-secure", o.SecureMetrics, "Serve metrics over HTTPS, for callers authorised through the API server.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Enable leader election, so that only one manager is active at a time.")
	fs.StringVar(&o.LeaderIdentity, "leader-election-identity", o.LeaderIdentity, "This manager's identity in the leader election Lease (default $POD_NAME): the same after a restart of the container, so a restarted leader leads again at once instead of waiting out its own lease. Empty: the host name and a random suffix.")
	fs.IntVar(&o.MaxKeysPerUser, "max-keys-per-user", o.MaxKeysPerUser, "The number of Active keys a user may hold, across all namespaces.")
	fs.StringVar(&o.SlotNamespace, "slot-namespace", o.SlotNamespace, "The namespace of the Leases that enforce --max-keys-per-user.")
	fs.IntVar(&o.Concurrency, "max-concurrent-reconciles", o.Concurrency, "The number of APIKeys reconciled at once.")
	fs.DurationVar(&o.AccessRecheck, "access-recheck-interval", o.AccessRecheck, "How often a key's access is checked again besides on RoleBinding and ClusterRoleBinding changes.")
	fs.Var(days{&o.ExpiryWarning}, "expiry-warning", "How long before its expiry a key is ExpiringSoon (a Go duration, or days such as 14d).")
	fs.StringVar(&o.AuditStore, "audit-store", o.AuditStore, "Where audit records are kept durably: \"api\" (AuditEntries in the API server, in --slot-namespace: replicated by etcd, read by every replica; the install's choice) or \"log\" (the file at --audit-log-path, on one replica).")
	fs.DurationVar(&o.AuditRetention, "audit-retention", o.AuditRetention, "How long the API server keeps audit records (--audit-store=api); older days are deleted by the leader.")
	fs.StringVar(&o.AuditPath, "audit-log-path", o.AuditPath, "Append-only file for audit records (fsync'd, rotated); records always go to stdout as {\"audit\": ...} lines too.")
	fs.IntVar(&o.AuditMaxMiB, "audit-log-max-size", o.AuditMaxMiB, "Size in MiB at which the audit log is rotated.")
	fs.IntVar(&o.AuditMaxBackups, "audit-log-max-backups", o.AuditMaxBackups, "Rotated audit logs kept.")
	fs.StringVar(&o.Audit.Addr, "audit-bind-address", o.Audit.Addr, "The address of the HTTPS audit endpoint: kube-apiserver's audit webhook ("+auditserver.EventsPath+") and the export ("+auditserver.ExportPath+"). 0 disables it.")
	fs.StringVar(&o.Audit.CertFile, "audit-tls-cert-file", o.Audit.CertFile, "The audit endpoint's serving certificate (reloaded when it changes).")
	fs.StringVar(&o.Audit.KeyFile, "audit-tls-key-file", o.Audit.KeyFile, "The audit endpoint's serving key.")
	fs.StringVar(&o.Audit.ClientCAFile, "audit-webhook-client-ca-file", o.Audit.ClientCAFile, "CA of the client certificate kube-apiserver sends audit batches with.")
	fs.Var((*stringList)(&o.Audit.ClientNames), "audit-webhook-client-name", "A common name of the client certificate kube-apiserver sends audit batches with (repeatable; required with --audit-webhook-client-ca-file). Use a CA dedicated to that certificate.")
	fs.StringVar(&o.Audit.TokenFile, "audit-webhook-token-file", o.Audit.TokenFile, "File holding the bearer token kube-apiserver sends audit batches with.")
	fs.Var((*stringList)(&o.Audit.IgnoredUsers), "audit-ignore-user", "A user whose requests are not audited as views (repeatable); the manager's own identity always is.")
	fs.Float64Var(&o.QPS, "kube-api-qps", o.QPS, "Queries per second the manager may send to the API server.")
	fs.IntVar(&o.Burst, "kube-api-burst", o.Burst, "Burst of queries the manager may send to the API server.")
	fs.StringVar(&o.Verify.HTTPAddr, "verify-bind-address", o.Verify.HTTPAddr, "The address of the key verifier (forward auth: "+verify.VerifyPath+" or "+verify.VerifyPath+"/all/<path> for every namespace, "+verify.VerifyPath+"/ns/<namespace>[,...] for some; any other path is 404). 0 disables it. Plain HTTP unless --verify-tls-cert-file is set.")
	fs.StringVar(&o.Verify.CertFile, "verify-tls-cert-file", o.Verify.CertFile, "The verifier's serving certificate (reloaded when it changes); with --verify-tls-key-file it serves HTTPS.")
	fs.StringVar(&o.Verify.KeyFile, "verify-tls-key-file", o.Verify.KeyFile, "The verifier's serving key.")
	fs.StringVar(&o.Verify.GRPCAddr, "ext-authz-bind-address", o.Verify.GRPCAddr, "The address of the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization). 0 disables it.")
	fs.BoolVar(&o.Verify.GRPCRequireScope, "ext-authz-require-namespace", o.Verify.GRPCRequireScope, "Refuse (PERMISSION_DENIED, reason no_scope) every ext_authz check whose route sets no "+verify.ContextExtensionNamespace+" context extension, instead of accepting keys of every namespace.")
	o.API.AddFlags(fs)
	fs.DurationVar(&o.Verify.LastUsedInterval, "last-used-interval", o.Verify.LastUsedInterval, "How often at the most a key's status.lastUsedAt, and its Used and RejectedUse records, are written.")
}

// The values of --audit-store.
const (
	AuditStoreAPI = "api"
	AuditStoreLog = "log"
)

// AuditEndpoint reports whether the audit endpoint is on.
func (o *Options) AuditEndpoint() bool { return o.Audit.Addr != "0" && o.Audit.Addr != "" }

// Validate says everything wrong with o at once, a line a problem.
func (o *Options) Validate() error {
	var errs []error
	if o.AuditEndpoint() {
		if o.Audit.CertFile == "" || o.Audit.KeyFile == "" {
			errs = append(errs, errors.New("--audit-bind-address needs --audit-tls-cert-file and --audit-tls-key-file"))
		}
		if o.Audit.ClientCAFile == "" && o.Audit.TokenFile == "" {
			errs = append(errs, errors.New("--audit-bind-address needs --audit-webhook-client-ca-file or --audit-webhook-token-file to authenticate kube-apiserver"))
		}
		if o.Audit.ClientCAFile != "" && len(o.Audit.ClientNames) == 0 {
			errs = append(errs, errors.New("--audit-webhook-client-ca-file needs --audit-webhook-client-name: the common names of kube-apiserver's client certificates"))
		}
	}
	if err := o.API.Validate(); err != nil {
		errs = append(errs, err)
	}
	if (o.Verify.CertFile == "") != (o.Verify.KeyFile == "") {
		errs = append(errs, errors.New("--verify-tls-cert-file and --verify-tls-key-file go together"))
	}
	if o.AuditStore != AuditStoreAPI && o.AuditStore != AuditStoreLog {
		errs = append(errs, fmt.Errorf("--audit-store must be %q or %q, not %q", AuditStoreAPI, AuditStoreLog, o.AuditStore))
	}
	if o.AuditStore == AuditStoreAPI && o.AuditRetention < 24*time.Hour {
		errs = append(errs, errors.New("--audit-retention must be at least 24h: records are kept and deleted by the day"))
	}
	if o.MaxKeysPerUser < 1 {
		errs = append(errs, errors.New("--max-keys-per-user must be at least 1"))
	}
	if o.Concurrency < 1 {
		errs = append(errs, errors.New("--max-concurrent-reconciles must be at least 1"))
	}
	if o.SlotNamespace == "" {
		errs = append(errs, errors.New("--slot-namespace must name a namespace"))
	}
	return errors.Join(errs...)
}

// permissions are what the manager's identity needs for the components o
// turns on.
func (o *Options) permissions() []authorizationv1.ResourceAttributes {
	needed := controllers.RequiredPermissions(o.SlotNamespace)
	if o.AuditEndpoint() {
		needed = append(needed, auditserver.RequiredPermissions()...)
	}
	if o.API.Enabled() {
		needed = append(needed, auditapi.RequiredPermissions()...)
		if o.API.CertSecret != "" {
			needed = append(needed, apicerts.CertPermissions()...)
		}
	}
	if o.AuditStore == AuditStoreAPI {
		needed = append(needed, auditstore.RequiredPermissions(o.SlotNamespace)...)
	}
	return needed
}

// crds are the keymint.io resources besides apikeys that o needs.
func (o *Options) crds() []string {
	if o.AuditStore == AuditStoreAPI {
		return []string{"auditentries"}
	}
	return nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
