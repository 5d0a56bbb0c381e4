// Package metrics holds keymint's Prometheus metrics, served on the
// manager's metrics endpoint with controller-runtime's own.
package metrics

import (
	"context"
	"errors"
	runtimemetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

var (
	// IssueLatency is the time from an APIKey's creation to its first key.
	IssueLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keymint_issue_latency_seconds",
		Help:    "Time from an APIKey's creation until its key is first issued (including any wait for a slot).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	})
	// AccessReviews counts the SubjectAccessReviews the controller sends:
	// what checking keys' access costs the API server.
	AccessReviews = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keymint_access_reviews_total",
		Help: "SubjectAccessReviews sent to check whether a key's user may hold keys.",
	})
	// Verifications counts the verifier's verdicts by result: valid, or
	// the reason a key was refused.
	Verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keymint_verifications_total",
		Help: "Keys presented to the verifier, by result (valid, missing, malformed, unknown, expired, suspended, wrong_namespace).",
	}, []string{"result"})
	// VerifyDuration is how long a verification took inside the manager.
	VerifyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keymint_verification_duration_seconds",
		Help:    "Time the verifier took to answer, from request to response, by protocol (http, grpc).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14),
	}, []string{"protocol"})
	// Renewals counts renewals by result: renewed (the successor is in the
	// Secret), blocked (a renewal began to wait for a slot), failed (a
	// write failed; it is retried).
	Renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keymint_renewals_total",
		Help: "Key renewals (scheduled or requested), by result (renewed, blocked, failed).",
	}, []string{"result"})
	// RenewalLag is how long after its renewal time a key's successor was
	// written.
	RenewalLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keymint_renewal_lag_seconds",
		Help:    "Time from a key's renewal time until its successor was written into the Secret.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	})
	// ExpiryLag is how long after its expiresAt a key's Secret was deleted.
	ExpiryLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keymint_expiry_lag_seconds",
		Help:    "Time from a key's expiresAt until the controller expired it.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
	})
)

// The results of keymint_renewals_total.
const (
	RenewalRenewed = "renewed"
	RenewalBlocked = "blocked"
	RenewalFailed  = "failed"
)

// heapLive reports the heap the last garbage collection found live: what
// the manager holds, without the garbage go_memstats_heap_alloc_bytes
// counts until the next collection.
var heapLive = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
	Name: "keymint_go_heap_live_bytes",
	Help: "Heap memory marked live by the last garbage collection (runtime/metrics /gc/heap/live:bytes).",
}, func() float64 {
	sample := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(sample)
	if sample[0].Value.Kind() != runtimemetrics.KindUint64 {
		return 0
	}
	return float64(sample[0].Value.Uint64())
})

// keysByPhase counts APIKeys by phase from the manager's cache at each
// scrape, so the gauges never drift from the keys, and publishes the
// expiry of each Active key that expires.
type keysByPhase struct {
	reader  client.Reader
	desc    *prometheus.Desc
	expiry  *prometheus.Desc
	renewal *prometheus.Desc
	inUse   *prometheus.Desc
}

func newKeysByPhase(reader client.Reader) keysByPhase {
	return keysByPhase{reader: reader,
		desc: prometheus.NewDesc("keymint_apikeys", "APIKeys by phase.", []string{"phase"}, nil),
		expiry: prometheus.NewDesc("keymint_apikey_expiry_timestamp_seconds",
			"When an issued (Active or Inactive) key expires, in seconds since the epoch; keys that never expire have none.", []string{"namespace", "name", "user"}, nil),
		renewal: prometheus.NewDesc("keymint_apikey_renewal_timestamp_seconds",
			"When an issued key with spec.rotation renews itself (status.renewalTime), in seconds since the epoch.", []string{"namespace", "name", "user"}, nil),
		inUse: prometheus.NewDesc("keymint_apikey_previous_key_in_use",
			"1 for a renewed key whose previous key is still presented (condition PreviousKeyInUse); absent otherwise.", []string{"namespace", "name", "user"}, nil),
	}
}

func (c keysByPhase) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.expiry
	ch <- c.renewal
	ch <- c.inUse
}

func (c keysByPhase) Collect(ch chan<- prometheus.Metric) {
	list := &keymintv1alpha1.APIKeyList{}
	if err := c.reader.List(context.Background(), list); err != nil {
		return
	}
	counts := map[keymintv1alpha1.Phase]int{
		keymintv1alpha1.PhasePending: 0, keymintv1alpha1.PhaseActive: 0, keymintv1alpha1.PhaseInactive: 0,
		keymintv1alpha1.PhaseSuspended: 0, keymintv1alpha1.PhaseExpired: 0,
	}
	for i := range list.Items {
		phase := list.Items[i].Status.Phase
		if phase == "" {
			phase = keymintv1alpha1.PhasePending
		}
		counts[phase]++
		if k := &list.Items[i]; phase.Issued() && k.Status.ExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(k.Status.ExpiresAt.Unix()),
				k.Namespace, k.Name, k.Spec.User)
		}
		if k := &list.Items[i]; phase.Issued() && k.Status.RenewalTime != nil {
			ch <- prometheus.MustNewConstMetric(c.renewal, prometheus.GaugeValue, float64(k.Status.RenewalTime.Unix()),
				k.Namespace, k.Name, k.Spec.User)
		}
		if k := &list.Items[i]; apimeta.IsStatusConditionTrue(k.Status.Conditions, keymintv1alpha1.ConditionPreviousKeyInUse) {
			ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, 1, k.Namespace, k.Name, k.Spec.User)
		}
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(phase))
	}
}

// Register adds keymint's metrics to controller-runtime's registry; reader
// is the manager's cache.
func Register(reader client.Reader) error {
	for _, c := range []prometheus.Collector{
		IssueLatency, ExpiryLag, RenewalLag, Renewals, AccessReviews, Verifications, VerifyDuration, heapLive,
	} {
		if err := ctrlmetrics.Registry.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	// The keys by phase are read from this manager's cache: a manager
	// built after another in one process (tests) reports its own.
	byPhase := newKeysByPhase(reader)
	if err := ctrlmetrics.Registry.Register(byPhase); err != nil {
		var registered prometheus.AlreadyRegisteredError
		if !errors.As(err, &registered) {
			return err
		}
		ctrlmetrics.Registry.Unregister(registered.ExistingCollector)
		return ctrlmetrics.Registry.Register(byPhase)
	}
	return nil
}
