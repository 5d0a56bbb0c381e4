package cli

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/expiry"
)

// expiresText is the EXPIRES column: a date and how far it is from now.
func expiresText(key *keymintv1alpha1.APIKey, now time.Time) string {
	if t := key.KnownExpiry(); t != nil {
		if key.Status.ExpiresAt == nil && !t.After(key.CreationTimestamp.Time) {
			return t.UTC().Format("2006-01-02") + " (before the APIKey was created: no key is issued)"
		}
		return t.UTC().Format("2006-01-02") + " (" + relative(now, *t) + ")"
	}
	switch {
	case key.Spec.Expiration.Never != nil:
		return "never"
	case key.Spec.Expiration.Months != nil:
		return plural(int(*key.Spec.Expiration.Months), "month") + " after issue"
	}
	return "-"
}

// lastUsedText is when the verifier last accepted the key: "3 hours ago",
// "never used", or "-" for a key not yet issued.
func lastUsedText(key *keymintv1alpha1.APIKey, now time.Time) string {
	switch {
	case key.Status.LastUsedAt != nil:
		return "last used " + span(key.Status.LastUsedAt.Time, now) + " ago"
	case key.Status.KeyID == "":
		return "-"
	}
	return "never used"
}

// renewsText is when a key renews itself: "2026-03-18 (in 3 days)", or
// "-" for a key without spec.rotation, or whose renewal is blocked by its
// renewBefore.
func renewsText(key *keymintv1alpha1.APIKey, now time.Time) string {
	t := key.Status.RenewalTime
	switch {
	case t == nil || !key.Status.Phase.Issued():
		return "-"
	case t.After(now):
		return t.UTC().Format("2006-01-02") + " (in " + span(now, t.Time) + ")"
	}
	return t.UTC().Format("2006-01-02") + " (due)"
}

// relative is "in 3 months" or "expired 2 days ago".
func relative(now, t time.Time) string {
	if t.After(now) {
		return "in " + span(now, t)
	}
	return "expired " + span(t, now) + " ago"
}

// span is the calendar distance from from to to, in its largest whole unit.
func span(from, to time.Time) string {
	// A minute of slack: a key issued seconds ago for 12 months expires
	// "in 12 months", not in 11.
	months := 0
	for !expiry.AddMonths(from, months+1).After(to.Add(time.Minute)) {
		months++
	}
	// To the nearer whole month, as people round: a 6-month key issued ten
	// minutes ago expires "in 6 months".
	if months >= 1 {
		lower, upper := expiry.AddMonths(from, months), expiry.AddMonths(from, months+1)
		if upper.Sub(to) < to.Sub(lower) {
			months++
		}
	}
	d := to.Sub(from)
	switch {
	case months >= 24:
		return plural(months/12, "year")
	case months >= 1:
		return plural(months, "month")
	case d >= 24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int(d/time.Minute), "minute")
	}
	return "less than a minute"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// age is kubectl's AGE column.
func age(key *keymintv1alpha1.APIKey, now time.Time) string {
	return ageOf(key.CreationTimestamp.Time, now)
}

func ageOf(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// orDash shows an empty value as "-", as kubectl does.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
