package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/apicerts"
	"github.com/keymint/keymint/internal/apiwait"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/auditapi"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/auditstore"
	"github.com/keymint/keymint/internal/deletions"
	"github.com/keymint/keymint/internal/keysecret"
	"github.com/keymint/keymint/internal/metrics"
	"github.com/keymint/keymint/internal/verify"
)

// Scheme holds the types the manager reads: Kubernetes' and keymint's.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(Scheme))
}

// Leader election rides out an API server outage of 30 s and more: the
// leader keeps trying to renew for 40 s before it gives up its lease.
const (
	LeaseDuration = 60 * time.Second
	RenewDeadline = 40 * time.Second
	RetryPeriod   = 5 * time.Second
	// LeaderElectionID names the leader election Lease.
	LeaderElectionID = "keymint.io"
)

// The components New wires, as Manager.Components names them.
const (
	ComponentController    = "controller"
	ComponentVerifier      = "verifier"
	ComponentExtAuthz      = "ext-authz"
	ComponentAuditEndpoint = "audit-endpoint"
	ComponentAPI           = "aggregated-api"
	ComponentMetrics       = "metrics"
	ComponentProbes        = "probes"
)

// Deps are what a test supplies in place of what main uses; the zero value
// is main's.
type Deps struct {
	// Clock is the controller's and the verifier's; the real clock if nil.
	Clock clock.PassiveClock
	// AuditLog is the audit log, already open, in place of opening
	// Options.AuditPath.
	AuditLog *audit.File
	// AuditOut takes every record besides the audit log; stdout's
	// {"audit": ...} lines if nil.
	AuditOut audit.Writer
	// NewClient builds the manager's client (failure injection).
	NewClient client.NewClientFunc
	// Controller and AuditEndpoint adjust those components before they are
	// set up (test hooks).
	Controller    func(*controllers.APIKeyReconciler)
	AuditEndpoint func(*auditserver.Server)
	API           func(*auditapi.Deps)
	// SeveralManagers lets one process build more than one manager, whose
	// controllers share a name.
	SeveralManagers bool
}

// Manager is keymint's manager with what New wired into it.
type Manager struct {
	ctrl.Manager
	Controller *controllers.APIKeyReconciler
	// Components names what New wired, in order.
	Components []string
	closers    []func() error
}

// New builds keymint's manager from o: it checks what the manager needs on
// the API server (waiting out an outage), loads the signing key, and wires
// the controller, the verifier, the audit endpoint, metrics and probes.
func New(ctx context.Context, cfg *rest.Config, o *Options, d Deps) (m *Manager, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := ctrl.Log.WithName("setup")
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(o.QPS), o.Burst
	// Requests wait out an API server outage, so the caches resume the
	// moment it is back.
	cfg.Wrap(apiwait.Wrap(ctrl.Log.WithName("apiserver")))

	// What is missing ends the manager; an API server that is away is
	// waited for, here and in the set-up calls below.
	if err := apiwait.Retry(ctx, log, "start-up checks", func() error { return preflight(ctx, cfg, o.SlotNamespace, o.permissions(), o.crds()) }); err != nil {
		return nil, err
	}
	mopts, err := managerOptions(cfg, o, d)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	m = &Manager{Manager: mgr}
	// A failure below returns a nil Manager: close what this one opened.
	built := m
	defer func() {
		if err != nil {
			built.close()
		}
	}()

	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	sinks, err := m.auditSinks(o, d)
	if err != nil {
		return nil, err
	}
	trail, auditLog := sinks.trail, sinks.log
	var signer *keysecret.Signer
	if err := apiwait.Retry(ctx, log, "loading the signing key", func() (err error) {
		signer, err = controllers.LoadSigner(ctx, mgr.GetAPIReader(), mgr.GetClient(), o.SlotNamespace)
		return err
	}); err != nil {
		return nil, err
	}

	m.Controller = &controllers.APIKeyReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("keymint"),
		Clock:                   d.Clock,
		Signer:                  signer,
		MaxKeysPerUser:          o.MaxKeysPerUser,
		SlotNamespace:           o.SlotNamespace,
		MaxConcurrentReconciles: o.Concurrency,
		AccessRecheck:           o.AccessRecheck,
		ExpiryWarning:           o.ExpiryWarning,
		Audit:                   trail,
	}
	if d.Controller != nil {
		d.Controller(m.Controller)
	}
	if err := m.Controller.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the APIKey controller: %w", err)
	}
	m.Components = append(m.Components, ComponentController)

	vo := o.Verify
	vo.Signer, vo.Audit, vo.Clock = signer, trail, d.Clock
	if _, err := verify.Setup(ctx, mgr, vo); err != nil {
		return nil, fmt.Errorf("setting up the key verifier: %w", err)
	}
	if verify.Enabled(vo.HTTPAddr) {
		m.Components = append(m.Components, ComponentVerifier)
	}
	if verify.Enabled(vo.GRPCAddr) {
		m.Components = append(m.Components, ComponentExtAuthz)
	}

	if o.AuditEndpoint() {
		server := o.Audit
		server.Trail, server.Log = trail, auditLog
		if d.AuditEndpoint != nil {
			d.AuditEndpoint(&server)
		}
		if err := server.SetupWithManager(ctx, mgr); err != nil {
			return nil, fmt.Errorf("setting up the audit endpoint: %w", err)
		}
		m.Components = append(m.Components, ComponentAuditEndpoint)
	}

	if o.API.Enabled() {
		deps := auditapi.Deps{Reader: mgr.GetClient(), LiveReader: mgr.GetAPIReader(), Signer: signer, Clock: d.Clock,
			Trail: sinks.durable, Records: sinks.records, Echo: sinks.out}
		if sinks.durable != nil {
			deps.Deletions = &deletions.Handler{Live: mgr.GetAPIReader(), Reviews: mgr.GetClient(), Signer: signer,
				Trail: sinks.durable, Echo: sinks.out, Clock: d.Clock}
		}
		if d.API != nil {
			d.API(&deps)
		}
		if err := m.addAPI(o, deps); err != nil {
			return nil, err
		}
	}

	if err := metrics.Register(mgr.GetCache()); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if o.MetricsAddr != "0" && o.MetricsAddr != "" {
		m.Components = append(m.Components, ComponentMetrics)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("setting up the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("setting up the ready check: %w", err)
	}
	if o.ProbeAddr != "0" && o.ProbeAddr != "" {
		m.Components = append(m.Components, ComponentProbes)
	}
	return m, nil
}

// addAPI adds the aggregated API. It reveals keys and serves records only
// with a durable trail: a reveal's record must be kept before the key
// leaves, and stdout does not keep it. With a self-managed certificate,
// the server starts once the certificate is on disk.
func (m *Manager) addAPI(o *Options, deps auditapi.Deps) error {
	var ready chan struct{}
	if o.API.CertSecret != "" {
		ready = make(chan struct{})
		certs := apicerts.SelfManagedCerts{Namespace: o.SlotNamespace, Secret: o.API.CertSecret, Service: o.API.Service}
		if err := certs.Add(m, o.API.CertFile, o.API.KeyFile, ready); err != nil {
			return fmt.Errorf("setting up the aggregated API's certificate: %w", err)
		}
	}
	api := auditapi.Runnable(ready, &o.API, deps)
	if err := m.Add(api); err != nil {
		return err
	}
	if err := m.AddReadyzCheck("aggregated-api", api.Check); err != nil {
		return err
	}
	m.Components = append(m.Components, ComponentAPI)
	return nil
}

// Start runs the manager until ctx ends, then closes the audit log.
func (m *Manager) Start(ctx context.Context) error {
	defer m.close()
	return m.Manager.Start(ctx)
}

func (m *Manager) close() {
	for _, c := range m.closers {
		_ = c()
	}
	m.closers = nil
}

// auditSinks are where records go and are read from.
type auditSinks struct {
	// trail takes every record: the durable stores first, then out.
	trail audit.Writer
	// durable is what a reveal waits for: the API server's store, or the
	// audit log; nil when records go to stdout only.
	durable audit.Writer
	records auditapi.Source
	log     *audit.File
	out     audit.Writer
}

// auditSinks opens the trail: the records stored in the API server
// (--audit-store=api, with their retention on the leader), the audit log
// (fsync'd), and stdout's lines (or what d says instead).
func (m *Manager) auditSinks(o *Options, d Deps) (*auditSinks, error) {
	s := &auditSinks{log: d.AuditLog, out: d.AuditOut}
	if s.log == nil && o.AuditPath != "" {
		file, err := audit.OpenFile(o.AuditPath, int64(o.AuditMaxMiB)<<20, o.AuditMaxBackups, audit.WithLogger(ctrl.Log.WithName("audit")))
		if err != nil {
			return nil, fmt.Errorf("opening the audit log %s: %w", o.AuditPath, err)
		}
		m.closers = append(m.closers, file.Close)
		s.log = file
	}
	if s.out == nil {
		s.out = &audit.Lines{W: os.Stdout}
	}
	multi := audit.Multi{}
	if o.AuditStore == AuditStoreAPI {
		// Uncached: the trail is listed a page at a time, never held.
		c, err := client.New(m.GetConfig(), client.Options{Scheme: m.GetScheme(), Mapper: m.GetRESTMapper()})
		if err != nil {
			return nil, err
		}
		store := &auditstore.Store{Client: c, Namespace: o.SlotNamespace}
		retention := &auditstore.Retention{Store: store, Keep: o.AuditRetention, Clock: clock.RealClock{}}
		// A RunnableFunc runs on the leader only.
		if err := m.Add(manager.RunnableFunc(retention.Start)); err != nil {
			return nil, err
		}
		multi = append(multi, store)
		s.durable, s.records = store, store
	}
	if s.log != nil {
		multi = append(multi, s.log)
		if s.durable == nil {
			s.durable, s.records = s.log, auditapi.FileSource{Log: s.log}
		}
	}
	s.trail = append(multi, s.out)
	return s, nil
}

func managerOptions(cfg *rest.Config, o *Options, d Deps) (ctrl.Options, error) {
	metricsOptions := metricsserver.Options{
		BindAddress:   o.MetricsAddr,
		SecureServing: o.SecureMetrics,
		// HTTP/2 is off: it is open to the Rapid Reset and Stream
		// Cancellation attacks, and metrics do not need it.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if o.SecureMetrics {
		metricsOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	lease, renew, retry := LeaseDuration, RenewDeadline, RetryPeriod
	opts := ctrl.Options{
		Scheme:                  Scheme,
		Metrics:                 metricsOptions,
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.SlotNamespace,
		// A manager that stops hands the lease on at once.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		Cache:                         controllers.CacheOptions(o.SlotNamespace),
		NewClient:                     d.NewClient,
	}
	if d.SeveralManagers {
		opts.Controller = config.Controller{SkipNameValidation: new(true)}
	}
	if o.LeaderElect && o.LeaderIdentity != "" {
		// A fixed identity: a restarted leader leads again at once.
		lock, err := leaderElectionLock(cfg, o.SlotNamespace, o.LeaderIdentity)
		if err != nil {
			return opts, fmt.Errorf("setting up leader election: %w", err)
		}
		opts.LeaderElectionResourceLockInterface = lock
	}
	return opts, nil
}

// leaderElectionLock is the leader election Lease, held under identity.
func leaderElectionLock(cfg *rest.Config, namespace, identity string) (resourcelock.Interface, error) {
	cs, err := kubernetes.NewForConfig(rest.AddUserAgent(rest.CopyConfig(cfg), "leader-election"))
	if err != nil {
		return nil, err
	}
	return resourcelock.New(resourcelock.LeasesResourceLock, namespace, LeaderElectionID, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: identity})
}

// TestOptions are NewOptions for a manager in a test process: no
// listener of its own (probes, metrics, verifier, ext_authz and audit
// endpoint off; a test turns on what it drives), four reconciles at once,
// and slotNamespace.
func TestOptions(slotNamespace string) *Options {
	o := NewOptions()
	o.ProbeAddr, o.MetricsAddr = "0", "0"
	o.Verify.HTTPAddr, o.Verify.GRPCAddr = "0", "0"
	o.Concurrency = 4
	o.SlotNamespace = slotNamespace
	// Records go to the test's own audit log, and stdout: a test that
	// stores them in the API server says so.
	o.AuditStore = AuditStoreLog
	return o
}
