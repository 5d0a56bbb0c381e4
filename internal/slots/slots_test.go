package slots

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

func cand(ns, name string, minute int) Candidate {
	return Candidate{
		Key:     types.NamespacedName{Namespace: ns, Name: name},
		Created: time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC),
	}
}

func TestNamesAreValidAndDistinct(t *testing.T) {
	long := strings.Repeat("u", 253)
	names := map[string]bool{}
	for _, user := range []string{"alice", "bob", "system:serviceaccount:team-a:ci", long} {
		if errs := validation.IsValidLabelValue(UserHash(user)); len(errs) > 0 {
			t.Errorf("UserHash(%q) is not a label value: %v", user, errs)
		}
		for i := range 2 {
			n := Name(user, i)
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Errorf("Name(%q, %d) = %q is not a valid name: %v", user, i, n, errs)
			}
			if names[n] {
				t.Errorf("Name(%q, %d) = %q repeats", user, i, n)
			}
			names[n] = true
		}
	}
	first, again := Name("alice", 0), Name("alice", 0)
	if first != again {
		t.Error("names are not deterministic")
	}
}

func TestEligible(t *testing.T) {
	oldest, middle, newest := cand("a", "k1", 1), cand("b", "k2", 2), cand("a", "k3", 3)
	sameTimeA, sameTimeB := cand("a", "z", 5), cand("b", "a", 5)
	waiting := []Candidate{newest, oldest, middle}
	tests := []struct {
		name    string
		self    Candidate
		waiting []Candidate
		free    int
		want    bool
	}{
		{"no free slot", oldest, waiting, 0, false},
		{"negative free slots", oldest, waiting, -1, false},
		{"oldest takes the one free slot", oldest, waiting, 1, true},
		{"middle waits behind oldest", middle, waiting, 1, false},
		{"middle takes the second of two free slots", middle, waiting, 2, true},
		{"newest waits for the third slot", newest, waiting, 2, false},
		{"self missing from a stale list still ranks", newest, []Candidate{oldest}, 2, true},
		{"alone", newest, nil, 1, true},
		{"same time: namespace breaks the tie", sameTimeA, []Candidate{sameTimeB, sameTimeA}, 1, true},
		{"same time: the later namespace waits", sameTimeB, []Candidate{sameTimeB, sameTimeA}, 1, false},
	}
	for _, tt := range tests {
		if got := Eligible(tt.self, tt.waiting, tt.free); got != tt.want {
			t.Errorf("%s: Eligible = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSorted(t *testing.T) {
	got := Sorted([]Candidate{cand("b", "x", 2), cand("a", "y", 2), cand("z", "z", 1)})
	var order []string
	for _, c := range got {
		order = append(order, c.Key.String())
	}
	if want := "z/z a/y b/x"; strings.Join(order, " ") != want {
		t.Fatalf("order = %v, want %s", order, want)
	}
}
