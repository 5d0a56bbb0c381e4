package expiry

import (
	"testing"
	"time"
)

func date(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestAddMonths(t *testing.T) {
	tests := []struct {
		name   string
		issued string
		months int
		want   string
	}{
		{"plain", "2026-03-15T10:20:30Z", 1, "2026-04-15T10:20:30Z"},
		{"Jan 31 clamps to Feb 28", "2026-01-31T08:00:00Z", 1, "2026-02-28T08:00:00Z"},
		{"Jan 31 clamps to Feb 29 in a leap year", "2028-01-31T08:00:00Z", 1, "2028-02-29T08:00:00Z"},
		{"Feb 29 + 12 months clamps to Feb 28", "2028-02-29T12:00:00Z", 12, "2029-02-28T12:00:00Z"},
		{"Feb 29 + 48 months is Feb 29", "2028-02-29T12:00:00Z", 48, "2032-02-29T12:00:00Z"},
		{"Mar 31 + 1 clamps to Apr 30", "2026-03-31T23:59:59Z", 1, "2026-04-30T23:59:59Z"},
		{"Aug 31 + 5 clamps to Jan 31 of next year", "2026-08-31T00:00:00Z", 5, "2027-01-31T00:00:00Z"},
		{"year rollover", "2026-11-30T06:00:00Z", 3, "2027-02-28T06:00:00Z"},
		{"December + 1", "2026-12-31T06:00:00Z", 1, "2027-01-31T06:00:00Z"},
		{"10 months", "2026-05-31T00:00:00Z", 10, "2027-03-31T00:00:00Z"},
		{"18 months", "2026-08-31T00:00:00Z", 18, "2028-02-29T00:00:00Z"},
		{"120 months", "2026-11-26T13:14:15.123456789Z", 120, "2036-11-26T13:14:15.123456789Z"},
		{"120 months from Feb 29", "2028-02-29T00:00:00Z", 120, "2038-02-28T00:00:00Z"},
		{"non-UTC input is read in UTC", "2026-01-31T23:30:00-05:00", 1, "2026-03-01T04:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AddMonths(date(tt.issued), tt.months)
			if !got.Equal(date(tt.want)) || got.Location() != time.UTC {
				t.Fatalf("AddMonths(%s, %d) = %s, want %s", tt.issued, tt.months, got.Format(time.RFC3339Nano), tt.want)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	now := date("2026-01-01T00:00:00Z")
	in := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	tests := []struct {
		name      string
		expiresAt *time.Time
		want      time.Duration
	}{
		{"never", nil, 0},
		{"past", in(-time.Second), 0},
		{"now", in(0), 0},
		{"soon", in(1500 * time.Millisecond), 1500 * time.Millisecond},
		{"far is capped", in(90 * 24 * time.Hour), time.Hour},
	}
	for _, tt := range tests {
		if got := RequeueAfter(now, tt.expiresAt, time.Hour); got != tt.want {
			t.Errorf("%s: RequeueAfter = %s, want %s", tt.name, got, tt.want)
		}
	}
}
