package verify

import (
	"context"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/keysecret"
)

// Options configure the verifier of a manager.
type Options struct {
	// HTTPAddr serves forward auth; "" or "0" turns it off.
	HTTPAddr          string
	CertFile, KeyFile string
	// GRPCAddr serves Envoy's ext_authz; "" or "0" turns it off.
	GRPCAddr string
	// GRPCRequireScope refuses ext_authz checks that name no namespaces.
	GRPCRequireScope bool
	// LastUsedInterval bounds the writes of status.lastUsedAt and the
	// usage records: one per key per interval.
	LastUsedInterval time.Duration
	Signer           *keysecret.Signer
	Audit            audit.Writer
	Clock            clock.PassiveClock
}

// Enabled reports whether addr turns a server on.
func Enabled(addr string) bool { return addr != "" && addr != "0" }

// Setup adds the verifier's servers and usage writer to mgr, and the index
// they read. It returns the Verifier, for tests.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) (*Verifier, error) {
	if !Enabled(o.HTTPAddr) && !Enabled(o.GRPCAddr) {
		return nil, nil
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.LastUsedInterval <= 0 {
		o.LastUsedInterval = DefaultLastUsedInterval
	}
	h, err := watchHashes(ctx, mgr.GetCache())
	if err != nil {
		return nil, err
	}
	usage := &Usage{Client: mgr.GetClient(), Live: mgr.GetAPIReader(), Audit: o.Audit, Clock: o.Clock, Interval: o.LastUsedInterval}
	v := &Verifier{Cache: mgr.GetCache(), hashes: h, Signer: o.Signer, Clock: o.Clock, Usage: usage}
	log := mgr.GetLogger().WithName("verify")
	if err := mgr.Add(usage); err != nil {
		return nil, err
	}
	if Enabled(o.HTTPAddr) {
		if err := mgr.Add(&HTTPServer{Addr: o.HTTPAddr, CertFile: o.CertFile, KeyFile: o.KeyFile, Verifier: v, Log: log}); err != nil {
			return nil, err
		}
	}
	if Enabled(o.GRPCAddr) {
		if err := mgr.Add(&GRPCServer{Addr: o.GRPCAddr, Verifier: v, Log: log, RequireScope: o.GRPCRequireScope}); err != nil {
			return nil, err
		}
	}
	return v, nil
}
