// Package expiry holds the time arithmetic of API keys. Every function takes
// "now" as an argument; none reads a clock.
package expiry

import (
	"time"
)

// AddMonths returns t plus n calendar months at the same time of day in UTC.
// When the day does not exist in the target month it clamps to the month's
// last day: Jan 31 + 1 month is Feb 28 (Feb 29 in a leap year). time.AddDate
// would normalise that to early March instead.
func AddMonths(t time.Time, n int) time.Time {
	t = t.UTC()
	// Day 1 of the target month never overflows, so AddDate is safe here.
	first := time.Date(t.Year(), t.Month(), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC).AddDate(0, n, 0)
	day := min(t.Day(), daysIn(first.Year(), first.Month()))
	return first.AddDate(0, 0, day-1)
}

// daysIn is the number of days in a month.
func daysIn(year int, month time.Month) int {
	// Day 0 of the next month is the last day of this one.
	return time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// RequeueAfter is how long to wait before checking a key again: the time
// left until expiresAt, but at most limit, so a clock jump or a lost timer
// is noticed. Zero means there is nothing to wait for.
func RequeueAfter(now time.Time, expiresAt *time.Time, limit time.Duration) time.Duration {
	if expiresAt == nil {
		return 0
	}
	left := expiresAt.Sub(now)
	if left <= 0 {
		return 0
	}
	return min(left, limit)
}
