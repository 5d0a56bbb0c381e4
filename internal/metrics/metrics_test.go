package metrics

import (
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func TestKeysByPhaseCountsTheCache(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := keymintv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	key := func(name string, phase keymintv1alpha1.Phase) *keymintv1alpha1.APIKey {
		return &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Status:     keymintv1alpha1.APIKeyStatus{Phase: phase},
		}
	}
	expiring := key("b", keymintv1alpha1.PhaseActive)
	expiring.Spec.User = "bob"
	expiring.Status.ExpiresAt = &metav1.Time{Time: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	expiring.Status.RenewalTime = &metav1.Time{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	expiring.Status.Conditions = []metav1.Condition{{Type: keymintv1alpha1.ConditionPreviousKeyInUse, Status: metav1.ConditionTrue}}
	expired := key("e", keymintv1alpha1.PhaseExpired)
	expired.Status.ExpiresAt = expiring.Status.ExpiresAt
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		key("a", keymintv1alpha1.PhaseActive), expiring,
		key("c", ""), key("d", keymintv1alpha1.PhasePending), expired,
	).Build()
	c := newKeysByPhase(reader)
	// Only an issued key that expires has an expiry; only one that renews a
	// renewal time.
	want := `# HELP keymint_apikey_expiry_timestamp_seconds When an issued (Active or Inactive) key expires, in seconds since the epoch; keys that never expire have none.
# TYPE keymint_apikey_expiry_timestamp_seconds gauge
keymint_apikey_expiry_timestamp_seconds{name="b",namespace="ns",user="bob"} 1.7987616e+09
# HELP keymint_apikey_previous_key_in_use 1 for a renewed key whose previous key is still presented (condition PreviousKeyInUse); absent otherwise.
# TYPE keymint_apikey_previous_key_in_use gauge
keymint_apikey_previous_key_in_use{name="b",namespace="ns",user="bob"} 1
# HELP keymint_apikey_renewal_timestamp_seconds When an issued key with spec.rotation renews itself (status.renewalTime), in seconds since the epoch.
# TYPE keymint_apikey_renewal_timestamp_seconds gauge
keymint_apikey_renewal_timestamp_seconds{name="b",namespace="ns",user="bob"} 1.7960832e+09
# HELP keymint_apikeys APIKeys by phase.
# TYPE keymint_apikeys gauge
keymint_apikeys{phase="Active"} 2
keymint_apikeys{phase="Expired"} 1
keymint_apikeys{phase="Inactive"} 0
keymint_apikeys{phase="Pending"} 2
keymint_apikeys{phase="Suspended"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestHeapLiveReportsTheRuntimesLiveHeap(t *testing.T) {
	goruntime.GC()
	live := testutil.ToFloat64(heapLive)
	var stats goruntime.MemStats
	goruntime.ReadMemStats(&stats)
	// Live heap after a collection is positive and no more than what is
	// allocated.
	if live <= 0 || live > float64(stats.HeapAlloc)*1.5 {
		t.Fatalf("keymint_go_heap_live_bytes = %.0f, heap allocated %d", live, stats.HeapAlloc)
	}
}
