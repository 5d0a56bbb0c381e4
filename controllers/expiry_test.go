package controllers

import (
	"testing"
	"time"
)

// TestRequeueFrom: a requeue counts from the start of the reconcile, never
// drops to "no requeue", and no requeue stays none.
func TestRequeueFrom(t *testing.T) {
	for _, tt := range []struct {
		d, elapsed, want time.Duration
	}{
		{time.Hour, 300 * time.Millisecond, time.Hour - 300*time.Millisecond},
		{200 * time.Millisecond, 300 * time.Millisecond, time.Millisecond},
		{time.Millisecond, 0, time.Millisecond},
		{0, time.Second, 0},
	} {
		if got := requeueFrom(tt.d, tt.elapsed); got != tt.want {
			t.Errorf("requeueFrom(%v, %v) = %v, want %v", tt.d, tt.elapsed, got, tt.want)
		}
	}
}
