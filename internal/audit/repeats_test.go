package audit

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func denied(actor, id string, at time.Time) Record {
	return Record{Time: at, Action: ActionViewDenied, Actor: Actor{Username: actor}, AuditID: id}
}

func actions(records []Record) []string {
	var out []string
	for _, r := range records {
		s := string(r.Action) + " " + r.Actor.Username
		if r.Repeats != nil {
			s += " repeats"
		}
		out = append(out, s)
	}
	return out
}

func TestRefusalsAreAggregatedPerActor(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := NewAggregator(0)
	write := func(now time.Time, records ...Record) []Record {
		out, commit := d.Plan(records, now)
		commit()
		return out
	}
	viewed := Record{Time: t0, Action: ActionViewed, Actor: Actor{Username: "alice"}}

	got := write(t0, denied("mallory", "1", t0), viewed, denied("mallory", "2", t0.Add(time.Second)), denied("eve", "3", t0))
	if want := []string{"ViewDenied mallory", "Viewed alice", "ViewDenied eve"}; !slices.Equal(actions(got), want) {
		t.Fatalf("first batch wrote %v, want %v", actions(got), want)
	}

	// A batch that fails to write is planned again without counting twice.
	if out, _ := d.Plan([]Record{denied("mallory", "4", t0.Add(time.Minute))}, t0.Add(time.Minute)); len(out) != 0 {
		t.Fatalf("a repeated refusal was written: %v", actions(out))
	}
	impersonated := denied("mallory", "5", t0.Add(2*time.Minute))
	impersonated.Impersonator = &Actor{Username: "admin"}
	got = write(t0.Add(2*time.Minute), denied("mallory", "4", t0.Add(time.Minute)), impersonated)
	if want := []string{"ViewDenied mallory"}; !slices.Equal(actions(got), want) || got[0].Impersonator == nil {
		t.Fatalf("wrote %v, want only the impersonated refusal, a window of its own", actions(got))
	}

	// The window closes: one summary per actor that repeated, then a new window.
	got = write(t0.Add(RepeatWindow))
	if len(got) != 1 || got[0].Actor.Username != "mallory" || got[0].Impersonator != nil {
		t.Fatalf("closing the windows wrote %+v, want mallory's summary", got)
	}
	want := Repeats{Count: 2, First: t0.Add(time.Second), Last: t0.Add(time.Minute)}
	if *got[0].Repeats != want {
		t.Errorf("repeats = %+v, want %+v", *got[0].Repeats, want)
	}
	if got[0].Message != "mallory was refused 2 more reads of Secrets holding keys between 2026-12-01T12:00:01Z and 2026-12-01T12:01:00Z, after the refusal of request 1" {
		t.Errorf("message = %q", got[0].Message)
	}
	if got := write(t0.Add(RepeatWindow+time.Second), denied("mallory", "6", t0.Add(RepeatWindow+time.Second))); len(got) != 1 || got[0].Repeats != nil {
		t.Fatalf("the first refusal of a new window: %+v", got)
	}
}

func TestRefusalWindowsAreBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := NewAggregator(0)
	var batch []Record
	for i := range MaxRepeatWindows + 5 {
		batch = append(batch, denied(fmt.Sprintf("sa-%d", i), "x", t0))
	}
	out, commit := d.Plan(batch, t0)
	commit()
	if len(out) != len(batch) || len(d.windows) != MaxRepeatWindows {
		t.Fatalf("wrote %d of %d refusals with %d windows open, want all written and %d windows", len(out), len(batch), len(d.windows), MaxRepeatWindows)
	}
}
