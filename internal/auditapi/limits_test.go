package auditapi

import "testing"

// TestOneActorsRevealsAreBounded: a burst, then none until the bucket
// refills; another actor is not held back, and the table of buckets never
// outgrows its bound.
func TestOneActorsRevealsAreBounded(t *testing.T) {
	l := newActorLimits()
	for i := range revealBurst {
		if !l.allow("alice") {
			t.Fatalf("reveal %d of a burst of %d refused", i+1, revealBurst)
		}
	}
	if l.allow("alice") {
		t.Error("a reveal past the burst was allowed at once")
	}
	if !l.allow("bob") {
		t.Error("bob was held back by alice's reveals")
	}
	for i := range maxActorLimits + 10 {
		l.allow(string(rune(i)))
	}
	if n := len(l.limits); n > maxActorLimits {
		t.Errorf("%d buckets held, bound %d", n, maxActorLimits)
	}
}
