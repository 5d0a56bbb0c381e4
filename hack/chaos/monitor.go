package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	toolswatch "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
	"github.com/keymint/keymint/internal/testenv"
)

// The invariants, in the order they are reported.
const (
	invCap        = "at most 2 live keys (Secrets and previous keys) per user at every event"
	invOneSecret  = "at most one Secret per APIKey at every event"
	invEarly      = "no key revoked while its APIKey lives (none expires in the run)"
	invOrphans    = "no orphaned Secret or slot after convergence"
	invLost       = "no acknowledged audit record lost (file and API server)"
	invDuplicate  = "no audit record twice in a file"
	invLifecycle  = "an Issued, Reissued or Renewed record for every key issued"
	invSettled    = "pending keys settled within 15s of the API server's return"
	invPastExpiry = "no key accepted past its expiresAt (a rotated key's previous key, probed)"
)

var invariants = []string{invCap, invOneSecret, invEarly, invOrphans, invLost, invDuplicate, invLifecycle, invSettled, invPastExpiry}

// monitor watches the namespace's APIKeys and Secrets, from the API server,
// and checks the invariants at every event.
type monitor struct {
	mu         sync.Mutex
	events     int
	violations map[string][]string
	// secrets are the live minted Secrets, by name: owner UID and user.
	secrets map[string]secretState
	// keys are the APIKeys by UID; gone once deleted.
	keys   map[string]*keymintv1alpha1.APIKey
	issued map[string]bool // key IDs seen in a status
	// revocations are the Secret deletions still to check.
	revocations []pendingRevocation
}

// secretState is what the monitor keeps of a minted Secret: its owner's
// UID, its user, and the previous key it vouches for (the verifier accepts
// a previous key only while its Secret names it).
type secretState struct{ owner, user, previousKeyHash string }

func newMonitor(ctx context.Context, c client.WithWatch, ns string) (*monitor, error) {
	m := &monitor{violations: map[string][]string{}, secrets: map[string]secretState{}, keys: map[string]*keymintv1alpha1.APIKey{}, issued: map[string]bool{}}
	for _, list := range []client.ObjectList{&keymintv1alpha1.APIKeyList{}, &corev1.SecretList{}} {
		// A retry watcher resumes where it was when the API server goes away.
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		rv := list.GetResourceVersion()
		w, err := toolswatch.NewRetryWatcherWithContext(ctx, rv, &watcherFunc{c: c, list: list, ns: ns})
		if err != nil {
			return nil, err
		}
		go func() {
			for ev := range w.ResultChan() {
				m.observe(ev)
			}
		}()
	}
	go m.checkRevocations(ctx)
	return m, nil
}

// watcherFunc lets a RetryWatcher watch with a controller-runtime client.
type watcherFunc struct {
	c    client.WithWatch
	list client.ObjectList
	ns   string
}

func (w *watcherFunc) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return w.c.Watch(ctx, w.list.DeepCopyObject().(client.ObjectList), client.InNamespace(w.ns), &client.ListOptions{Raw: &opts})
}

type pendingRevocation struct {
	owner, secret string
	at            time.Time
}

func (m *monitor) observe(ev watch.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events++
	switch o := ev.Object.(type) {
	case *keymintv1alpha1.APIKey:
		if ev.Type == watch.Deleted {
			delete(m.keys, string(o.UID))
			return
		}
		m.keys[string(o.UID)] = o
		if o.Status.KeyID != "" {
			m.issued[o.Status.KeyID] = true
		}
		m.checkCapLocked(o.Spec.User)
	case *corev1.Secret:
		if o.Type != keymintv1alpha1.SecretType {
			return
		}
		owner := ""
		if ref := metav1.GetControllerOf(o); ref != nil {
			owner = string(ref.UID)
		}
		if ev.Type == watch.Deleted {
			delete(m.secrets, o.Name)
			m.revocations = append(m.revocations, pendingRevocation{owner: owner, secret: o.Name, at: time.Now()})
			return
		}
		m.secrets[o.Name] = secretState{owner: owner, user: string(o.Data[keymintv1alpha1.DataUser]),
			previousKeyHash: o.Annotations[keymintv1alpha1.AnnotationPreviousKeyHash]}
		perOwner := map[string]int{}
		for _, s := range m.secrets {
			perOwner[s.owner]++
		}
		m.checkCapLocked(string(o.Data[keymintv1alpha1.DataUser]))
		if n := perOwner[owner]; n > 1 {
			m.violateLocked(invOneSecret, fmt.Sprintf("APIKey %s has %d Secrets", owner, n))
		}
	}
}

// checkCapLocked counts user's live credentials: the keys in their minted
// Secrets, and the previous keys of renewed APIKeys whose Secret still
// vouches for them, until those expire; m.mu is held. The Secret is the
// witness because it is written first: a renewal without grace stops the
// previous key there, then frees its slot, and only then writes the
// status, which another watch may show late.
func (m *monitor) checkCapLocked(user string) {
	var held []string
	vouched := map[string]string{} // owner UID: the previous key its Secret names
	for name, s := range m.secrets {
		if s.user == user {
			held = append(held, "Secret "+name)
			vouched[s.owner] = s.previousKeyHash
		}
	}
	now := time.Now()
	for uid, k := range m.keys {
		if h, ok := vouched[uid]; ok && k.Spec.User == user && k.PreviousValidAt(now) && h == k.Status.PreviousKey.KeyHash {
			held = append(held, fmt.Sprintf("%s's previous key (until %s)", k.Name, k.Status.PreviousKey.ExpiresAt.UTC().Format(time.RFC3339)))
		}
	}
	if len(held) > 2 {
		slices.Sort(held)
		m.violateLocked(invCap, fmt.Sprintf("user %s holds %d live keys at %s: %s", user, len(held), now.UTC().Format(time.RFC3339Nano), strings.Join(held, ", ")))
	}
}

// checkRevocations: a Secret deleted while its APIKey still lives, and is
// not being deleted, five seconds later, was revoked early.
func (m *monitor) checkRevocations(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var keep []pendingRevocation
		for _, r := range m.revocations {
			if time.Since(r.at) < 5*time.Second {
				keep = append(keep, r)
				continue
			}
			if k, ok := m.keys[r.owner]; ok && k.DeletionTimestamp.IsZero() {
				m.violateLocked(invEarly, fmt.Sprintf("Secret %s deleted while APIKey %s lives", r.secret, k.Name))
			}
		}
		m.revocations = keep
		m.mu.Unlock()
	}
}

func (m *monitor) violate(inv, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.violateLocked(inv, what)
}

func (m *monitor) violateLocked(inv, what string) {
	m.violations[inv] = append(m.violations[inv], what)
}

func (m *monitor) issuedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.issued)
}

// checkFinal checks, after convergence, orphans and the audit files: every
// acknowledged record is there once, and every issued key has its record.
func (m *monitor) checkFinal(ctx context.Context, c client.Client, posted *auditPoster, files ...string) error {
	if what, err := unsettled(ctx, c); err != nil {
		return err
	} else if what != "" {
		m.violate(invOrphans, what)
	}
	seen := map[string]int{}
	lifecycle := map[string]bool{}
	for _, path := range files {
		log, err := audit.OpenFile(path, 0, 0)
		if err != nil {
			return err
		}
		inFile := map[string]bool{}
		err = log.Each(audit.Filter{}, func(r audit.Record) error {
			if r.ID != "" && inFile[r.ID] {
				m.violate(invDuplicate, fmt.Sprintf("record %s twice in %s", r.ID, path))
			}
			inFile[r.ID] = true
			seen[r.AuditID]++
			if r.Action == audit.ActionIssued || r.Action == audit.ActionReissued || r.Action == audit.Action(keymintv1alpha1.ReasonRenewed) {
				lifecycle[r.KeyID] = true
			}
			return nil
		})
		_ = log.Close()
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
	}
	stored, err := storedAuditIDs(ctx, c)
	if err != nil {
		return err
	}
	for _, id := range posted.acknowledged() {
		if seen[id] == 0 {
			m.violate(invLost, "acknowledged audit event "+id+" is not on file")
		}
		if !stored[id] {
			m.violate(invLost, "acknowledged audit event "+id+" is not in the API server's store")
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range m.issued {
		if !lifecycle[id] {
			m.violateLocked(invLifecycle, "no Issued, Reissued or Renewed record of key "+id)
		}
	}
	return nil
}

// storedAuditIDs are the audit IDs of the records in the API server's
// store (AuditEntries in keymint's namespace), a page at a time.
func storedAuditIDs(ctx context.Context, c client.Client) (map[string]bool, error) {
	ids := map[string]bool{}
	for cont := ""; ; {
		page := &keymintv1alpha1.AuditEntryList{}
		if err := c.List(ctx, page, client.InNamespace(testenv.SlotNamespace), client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing the stored audit records: %w", err)
		}
		for i := range page.Items {
			var r audit.Record
			if json.Unmarshal(page.Items[i].Record.Raw, &r) == nil {
				ids[r.AuditID] = true
			}
		}
		if cont = page.Continue; cont == "" {
			return ids, nil
		}
	}
}

// report prints one line per invariant and returns the violations.
func (m *monitor) report(out io.Writer) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for _, inv := range invariants {
		v := m.violations[inv]
		total += len(v)
		fmt.Fprintf(out, "%-70s %d violations\n", inv+":", len(v))
		for i, what := range v {
			if i == 5 {
				fmt.Fprintf(out, "    ... and %d more\n", len(v)-5)
				break
			}
			fmt.Fprintf(out, "    %s\n", what)
		}
	}
	fmt.Fprintf(out, "%d watch events checked\n", m.events)
	return total
}
