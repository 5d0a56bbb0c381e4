package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKnownExpiryAndDueAt: the recorded expiry wins over spec.expiration.at;
// months are unknown until issued; a key is due at its expiry, not a
// nanosecond before; a key without one is never due.
func TestKnownExpiryAndDueAt(t *testing.T) {
	created := time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC)
	at := created.Add(48 * time.Hour)
	recorded := created.AddDate(0, 1, -3) // Feb 28: one month after Jan 31
	tests := []struct {
		name string
		spec Expiration
		st   *time.Time
		want *time.Time
	}{
		{"never", Expiration{Never: new(true)}, nil, nil},
		{"months before issue", Expiration{Months: new(int32(1))}, nil, nil},
		{"months once issued", Expiration{Months: new(int32(1))}, &recorded, &recorded},
		{"at before issue", Expiration{At: &metav1.Time{Time: at}}, nil, &at},
		{"recorded wins over at", Expiration{At: &metav1.Time{Time: at}}, &recorded, &recorded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &APIKey{Spec: APIKeySpec{Expiration: tt.spec}}
			if tt.st != nil {
				k.Status.ExpiresAt = &metav1.Time{Time: *tt.st}
			}
			got := k.KnownExpiry()
			if (got == nil) != (tt.want == nil) || got != nil && !got.Equal(*tt.want) {
				t.Fatalf("KnownExpiry() = %v, want %v", got, tt.want)
			}
			far := created.AddDate(100, 0, 0)
			if tt.want == nil {
				if k.DueAt(far) {
					t.Error("a key without a known expiry became due")
				}
				return
			}
			if k.DueAt(tt.want.Add(-time.Nanosecond)) {
				t.Error("due a nanosecond before its expiry")
			}
			if !k.DueAt(*tt.want) {
				t.Error("not due at its expiry")
			}
		})
	}
}

// TestReady: the Ready condition's reason and message, empty before the
// first reconcile.
func TestReady(t *testing.T) {
	var st APIKeyStatus
	if st.Ready() != nil || st.ReadyReason() != "" || st.ReadyMessage() != "" {
		t.Fatal("a status without conditions has a Ready condition")
	}
	st.Conditions = []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonKeyLimitReached, Message: "waiting"}}
	if st.ReadyReason() != ReasonKeyLimitReached || st.ReadyMessage() != "waiting" {
		t.Fatalf("got %q, %q", st.ReadyReason(), st.ReadyMessage())
	}
}
