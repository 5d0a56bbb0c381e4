// Command manager runs the keymint operator.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/apiwait"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/metrics"
	"github.com/keymint/keymint/internal/verify"
	"github.com/keymint/keymint/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
}

// Leader election rides out an API server outage of 30 s and more: the
// leader keeps trying to renew for 40 s before it gives up its lease.
const (
	leaseDuration = 60 * time.Second
	renewDeadline = 40 * time.Second
	retryPeriod   = 5 * time.Second
	// leaderElectionID names the leader election Lease.
	leaderElectionID = "keymint.io"
)

func main() {
	var (
		metricsAddr, probeAddr, slotNamespace string
		pprofAddr                             string
		secureMetrics, enableLeaderElection   bool
		maxKeysPerUser, concurrency           int
		accessRecheck                         time.Duration
		auditPath                             string
		auditMaxMiB, auditMaxBackups          int
		qps                                   float64
		burst                                 int
		auditServer                           auditserver.Server
		auditIgnoredUsers                     stringList
		auditClientNames                      stringList
		leaderIdentity                        string
		verifyOpts                            verify.Options
		expiryWarning                         time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "The address the metrics endpoint binds to. Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "The address of Go's /debug/pprof endpoints (profiling; unauthenticated, so keep it on localhost). 0 disables them.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false, "Enable leader election, so that only one manager is active at a time.")
	flag.StringVar(&leaderIdentity, "leader-election-identity", os.Getenv("POD_NAME"), "This manager's identity in the leader election Lease (default $POD_NAME): the same after a restart of the container, so a restarted leader leads again at once instead of waiting out its own lease. Empty: the host name and a random suffix.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, for callers authorised through the API server.")
	flag.IntVar(&maxKeysPerUser, "max-keys-per-user", 2, "The number of Active keys a user may hold, across all namespaces.")
	flag.StringVar(&slotNamespace, "slot-namespace", envOr("POD_NAMESPACE", "keymint-system"), "The namespace of the Leases that enforce --max-keys-per-user.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 32, "The number of APIKeys reconciled at once.")
	flag.DurationVar(&accessRecheck, "access-recheck-interval", controllers.DefaultAccessRecheck, "How often a key's access is checked again besides on RoleBinding and ClusterRoleBinding changes.")
	flag.StringVar(&auditPath, "audit-log-path", "", "Append-only file for audit records (fsync'd, rotated); records always go to stdout as {\"audit\": ...} lines too.")
	flag.IntVar(&auditMaxMiB, "audit-log-max-size", 100, "Size in MiB at which the audit log is rotated.")
	flag.IntVar(&auditMaxBackups, "audit-log-max-backups", 10, "Rotated audit logs kept.")
	flag.StringVar(&auditServer.Addr, "audit-bind-address", "0", "The address of the HTTPS audit endpoint: kube-apiserver's audit webhook ("+auditserver.EventsPath+") and the export ("+auditserver.ExportPath+"). 0 disables it.")
	flag.StringVar(&auditServer.CertFile, "audit-tls-cert-file", "", "The audit endpoint's serving certificate (reloaded when it changes).")
	flag.StringVar(&auditServer.KeyFile, "audit-tls-key-file", "", "The audit endpoint's serving key.")
	flag.StringVar(&auditServer.ClientCAFile, "audit-webhook-client-ca-file", "", "CA of the client certificate kube-apiserver sends audit batches with.")
	flag.Var(&auditClientNames, "audit-webhook-client-name", "A common name of the client certificate kube-apiserver sends audit batches with (repeatable; required with --audit-webhook-client-ca-file). Use a CA dedicated to that certificate.")
	flag.StringVar(&auditServer.TokenFile, "audit-webhook-token-file", "", "File holding the bearer token kube-apiserver sends audit batches with.")
	flag.Var(&auditIgnoredUsers, "audit-ignore-user", "A user whose requests are not audited as views (repeatable); the manager's own identity always is.")
	flag.Float64Var(&qps, "kube-api-qps", 500, "Queries per second the manager may send to the API server.")
	flag.IntVar(&burst, "kube-api-burst", 1000, "Burst of queries the manager may send to the API server.")
	flag.StringVar(&verifyOpts.HTTPAddr, "verify-bind-address", ":8082", "The address of the key verifier (forward auth: "+verify.VerifyPath+" or "+verify.VerifyPath+"/all/<path> for every namespace, "+verify.VerifyPath+"/ns/<namespace>[,...] for some; any other path is 404). 0 disables it. Plain HTTP unless --verify-tls-cert-file is set.")
	flag.StringVar(&verifyOpts.CertFile, "verify-tls-cert-file", "", "The verifier's serving certificate (reloaded when it changes); with --verify-tls-key-file it serves HTTPS.")
	flag.StringVar(&verifyOpts.KeyFile, "verify-tls-key-file", "", "The verifier's serving key.")
	flag.StringVar(&verifyOpts.GRPCAddr, "ext-authz-bind-address", ":9001", "The address of the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization). 0 disables it.")
	flag.BoolVar(&verifyOpts.GRPCRequireScope, "ext-authz-require-namespace", false, "Refuse (PERMISSION_DENIED, reason no_scope) every ext_authz check whose route sets no "+verify.ContextExtensionNamespace+" context extension, instead of accepting keys of every namespace.")
	flag.DurationVar(&verifyOpts.LastUsedInterval, "last-used-interval", verify.DefaultLastUsedInterval, "How often at the most a key's status.lastUsedAt, and its Used and RejectedUse records, are written.")
	// Set before the flag is defined, so that --help shows the default.
	expiryWarning = controllers.DefaultExpiryWarning
	flag.Var(days{&expiryWarning}, "expiry-warning", "How long before its expiry a key is ExpiringSoon (a Go duration, or days such as 14d).")
	showVersion := flag.Bool("version", false, "Print the manager's version and exit.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println("keymint manager", version.Version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	auditEnabled := auditServer.Addr != "0" && auditServer.Addr != ""
	if auditEnabled && (auditServer.CertFile == "" || auditServer.KeyFile == "") {
		log.Error(nil, "--audit-bind-address needs --audit-tls-cert-file and --audit-tls-key-file")
		os.Exit(2)
	}
	if auditEnabled && auditServer.ClientCAFile == "" && auditServer.TokenFile == "" {
		log.Error(nil, "--audit-bind-address needs --audit-webhook-client-ca-file or --audit-webhook-token-file to authenticate kube-apiserver")
		os.Exit(2)
	}
	if auditEnabled && auditServer.ClientCAFile != "" && len(auditClientNames) == 0 {
		log.Error(nil, "--audit-webhook-client-ca-file needs --audit-webhook-client-name: the common names of kube-apiserver's client certificates")
		os.Exit(2)
	}
	auditServer.ClientNames = auditClientNames
	if (verifyOpts.CertFile == "") != (verifyOpts.KeyFile == "") {
		log.Error(nil, "--verify-tls-cert-file and --verify-tls-key-file go together")
		os.Exit(2)
	}
	if maxKeysPerUser < 1 {
		log.Error(nil, "--max-keys-per-user must be at least 1")
		os.Exit(2)
	}

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	// Requests wait out an API server outage, so the caches resume the
	// moment it is back.
	cfg.Wrap(apiwait.Wrap(ctrl.Log.WithName("apiserver")))

	metricsOptions := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		// HTTP/2 is off: it is open to the Rapid Reset and Stream
		// Cancellation attacks, and metrics do not need it.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if secureMetrics {
		metricsOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	lease, renew, retry := leaseDuration, renewDeadline, retryPeriod
	var leaderLock resourcelock.Interface
	if enableLeaderElection && leaderIdentity != "" {
		var err error
		if leaderLock, err = leaderElectionLock(cfg, slotNamespace, leaderIdentity); err != nil {
			log.Error(err, "unable to set up leader election")
			os.Exit(1)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions,
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          enableLeaderElection,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: slotNamespace,
		// A manager that stops hands the lease on at once.
		LeaderElectionReleaseOnCancel:       true,
		LeaderElectionResourceLockInterface: leaderLock,
		LeaseDuration:                       &lease,
		RenewDeadline:                       &renew,
		RetryPeriod:                         &retry,
		Cache:                               controllers.CacheOptions(slotNamespace),
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}

	auditTrail := audit.Multi{}
	if auditPath != "" {
		file, err := audit.OpenFile(auditPath, int64(auditMaxMiB)<<20, auditMaxBackups)
		if err != nil {
			log.Error(err, "unable to open the audit log", "path", auditPath)
			os.Exit(1)
		}
		defer func() { _ = file.Close() }()
		auditTrail = append(auditTrail, file)
		auditServer.Log = file
	}
	auditTrail = append(auditTrail, &audit.Lines{W: os.Stdout})

	ctx := ctrl.SetupSignalHandler()
	// What is missing ends the manager; an API server that is away is
	// waited for, here and in the set-up calls below.
	if err := apiwait.Retry(ctx, log, "start-up checks", func() error { return preflight(ctx, cfg, slotNamespace) }); err != nil {
		fmt.Fprintln(os.Stderr, "keymint: "+err.Error())
		os.Exit(1)
	}
	reconciler := &controllers.APIKeyReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("keymint"),
		Clock:                   clock.RealClock{},
		MaxKeysPerUser:          maxKeysPerUser,
		SlotNamespace:           slotNamespace,
		MaxConcurrentReconciles: concurrency,
		AccessRecheck:           accessRecheck,
		ExpiryWarning:           expiryWarning,
		Audit:                   auditTrail,
	}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		log.Error(err, "unable to set up the APIKey controller")
		os.Exit(1)
	}
	verifyOpts.Signer, verifyOpts.Audit = reconciler.Signer, auditTrail
	if _, err := verify.Setup(ctx, mgr, verifyOpts); err != nil {
		log.Error(err, "unable to set up the key verifier")
		os.Exit(1)
	}
	if auditEnabled {
		auditServer.Trail, auditServer.IgnoredUsers = auditTrail, auditIgnoredUsers
		if err := auditServer.SetupWithManager(ctx, mgr); err != nil {
			log.Error(err, "unable to set up the audit endpoint")
			os.Exit(1)
		}
	}
	if err := metrics.Register(mgr.GetCache()); err != nil {
		log.Error(err, "unable to register metrics")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the ready check")
		os.Exit(1)
	}

	log.Info("starting manager", "maxKeysPerUser", maxKeysPerUser, "slotNamespace", slotNamespace)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "problem running manager")
		os.Exit(1)
	}
}

// days is a duration flag that also takes whole days, such as 14d.
type days struct{ d *time.Duration }

func (f days) String() string {
	if f.d == nil {
		return ""
	}
	if *f.d%(24*time.Hour) == 0 && *f.d > 0 {
		return strconv.Itoa(int(*f.d/(24*time.Hour))) + "d"
	}
	return f.d.String()
}

func (f days) Set(v string) error {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 {
			return fmt.Errorf("%q is not a number of days", v)
		}
		*f.d = time.Duration(i) * 24 * time.Hour
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is neither a duration (336h) nor days (14d)", v)
	}
	*f.d = d
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// leaderElectionLock is the leader election Lease, held under identity.
func leaderElectionLock(cfg *rest.Config, namespace, identity string) (resourcelock.Interface, error) {
	cs, err := kubernetes.NewForConfig(rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election"))
	if err != nil {
		return nil, err
	}
	return resourcelock.New(resourcelock.LeasesResourceLock, namespace, leaderElectionID, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: identity})
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
