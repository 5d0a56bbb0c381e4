package main

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// throughput: the floor, then n keys for n users created by the workers,
// until every one is Active, on the same API server.
func (b *bench) throughput(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "throughput", N: n}
	floor, err := b.floor(ctx, n)
	if err != nil {
		return r, err
	}
	r.FloorSeconds = floor.Seconds()
	bare, err := b.bareCreates(ctx, n)
	if err != nil {
		return r, err
	}
	r.Notes = append(r.Notes, fmt.Sprintf("the same %d APIKey creates take %.2f s with no manager running", n, bare.Seconds()))
	job, err := b.jobFloor(ctx, n)
	if err != nil {
		return r, err
	}
	kw, err := b.prepare(ctx)
	if err != nil {
		return r, err
	}
	defer kw.Stop()
	before, err := b.scrape()
	if err != nil {
		return r, err
	}
	profiled := func() error { return nil }
	if apiserverProfile != "" {
		profiled = b.profileAPIServer(8*time.Second, apiserverProfile)
	}
	start := time.Now()
	created, err := b.createKeys(ctx, "keys", n, func(i int) string { return fmt.Sprintf("user-%d", i) }, never)
	if err != nil {
		return r, err
	}
	// The APIKey creates alone (admission policies included) set a bound
	// the manager cannot beat.
	r.Notes = append(r.Notes, fmt.Sprintf("the %d creates returned within %.2f s", n, time.Since(start).Seconds()))
	if err := kw.waitFor(ctx, n, 5*time.Minute); err != nil {
		return r, fmt.Errorf("%d of %d keys Active: %w", kw.count(), n, err)
	}
	r.KeymintSeconds = time.Since(start).Seconds()
	r.Ratio = r.KeymintSeconds / r.FloorSeconds
	r.JobFloorSeconds, r.JobRatio = job.Seconds(), r.KeymintSeconds/job.Seconds()
	r.Notes = append(r.Notes, fmt.Sprintf("job floor (APIKey create, Secret create, status patch per key): %.2f s; keymint %.2fx of it (goal 1.5x)",
		job.Seconds(), r.JobRatio))
	kw.mu.Lock()
	r.P50Seconds, r.P99Seconds = latencies(created, kw.active)
	kw.mu.Unlock()
	b.settle()
	after, err := b.scrape()
	if err != nil {
		return r, err
	}
	r.RequestsPerKey = perKey(before.requests, after.requests, n)
	r.PeakRSSMiB, r.HeapMiB = b.peakRSSMiB(), after.heap/(1<<20)
	return r, profiled()
}

// bareCreates is how long n APIKey creates take with no manager running:
// what the keys cost the API server before keymint does anything, admission
// policies included. The keys are gone again before the manager starts.
func (b *bench) bareCreates(ctx context.Context, n int) (time.Duration, error) {
	const ns = "bare"
	if err := b.namespace(ctx, ns); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := b.createKeys(ctx, ns, n, func(i int) string { return fmt.Sprintf("user-%d", i) }, never); err != nil {
		return 0, err
	}
	took := time.Since(start)
	return took, b.removeKeys(ctx, ns, n)
}

// settle waits for the manager's queue to drain after a burst.
func (b *bench) settle() {
	// The manager exposes no "idle" signal; its request counters stop moving.
	prev := -1.0
	_ = wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, false, func(context.Context) (bool, error) {
		m, err := b.scrape()
		if err != nil {
			return false, nil
		}
		total := 0.0
		for _, v := range m.requests {
			total += v
		}
		done := total == prev
		prev = total
		return done, nil
	})
	runtime.GC()
}

// idle: n Active keys, then a manager restart reconciles all of them; no
// APIKey, Secret or slot Lease may change.
func (b *bench) idle(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "idle", N: n}
	if err := b.activeKeys(ctx, n); err != nil {
		return r, err
	}
	before, err := b.versions(ctx)
	if err != nil {
		return r, err
	}
	b.stop()
	if err := b.startManager(ctx); err != nil {
		return r, err
	}
	start, err := b.scrape()
	if err != nil {
		return r, err
	}
	b.settle()
	end, err := b.scrape()
	if err != nil {
		return r, err
	}
	after, err := b.versions(ctx)
	if err != nil {
		return r, err
	}
	changed := 0
	for k, v := range before {
		if after[k] != v {
			changed++
		}
	}
	r.Writes = float64(changed)
	r.RequestsPerKey = perKey(start.requests, end.requests, n)
	r.Notes = append(r.Notes, fmt.Sprintf("%d of %d objects changed by a full resync (POSTs are SubjectAccessReviews, not writes)", changed, len(before)))
	return r, nil
}

// versions maps every APIKey, minted Secret and slot Lease to its resourceVersion.
func (b *bench) versions(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	keys := &keymintv1alpha1.APIKeyList{}
	if err := b.env.Client.List(ctx, keys); err != nil {
		return nil, err
	}
	for _, k := range keys.Items {
		out["apikey/"+k.Namespace+"/"+k.Name] = k.ResourceVersion
	}
	secrets := &corev1.SecretList{}
	if err := b.env.Client.List(ctx, secrets, client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}); err != nil {
		return nil, err
	}
	for _, s := range secrets.Items {
		out["secret/"+s.Namespace+"/"+s.Name] = s.ResourceVersion
	}
	leases := &coordinationv1.LeaseList{}
	if err := b.env.Client.List(ctx, leases, client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}); err != nil {
		return nil, err
	}
	for _, l := range leases.Items {
		out["lease/"+l.Namespace+"/"+l.Name] = l.ResourceVersion
	}
	return out, nil
}

// capUnderLoad: users×perUser keys created at once converge to exactly 2
// Active per user, never more at any observed moment; then each user's
// Active keys are deleted and the queue moves on.
func (b *bench) capUnderLoad(ctx context.Context, users, perUser int) (result, error) {
	n := users * perUser
	r := result{Scenario: "cap", N: n}
	if err := b.startManager(ctx); err != nil {
		return r, err
	}
	if err := b.namespace(ctx, "keys"); err != nil {
		return r, err
	}
	w, err := b.env.Client.Watch(ctx, &keymintv1alpha1.APIKeyList{}, client.InNamespace("keys"))
	if err != nil {
		return r, err
	}
	defer w.Stop()
	var mu sync.Mutex
	active := map[string]map[string]bool{} // user -> active key names
	maxSeen := 0
	go func() {
		for ev := range w.ResultChan() {
			k, ok := ev.Object.(*keymintv1alpha1.APIKey)
			if !ok {
				continue
			}
			mu.Lock()
			if active[k.Spec.User] == nil {
				active[k.Spec.User] = map[string]bool{}
			}
			if ev.Type != watch.Deleted && k.Status.Phase == keymintv1alpha1.PhaseActive {
				active[k.Spec.User][k.Name] = true
			} else {
				delete(active[k.Spec.User], k.Name)
			}
			maxSeen = max(maxSeen, len(active[k.Spec.User]))
			mu.Unlock()
		}
	}()
	snapshot := func() map[string][]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string][]string{}
		for u, ks := range active {
			out[u] = slicesOf(ks)
		}
		return out
	}
	converged := func() bool {
		s := snapshot()
		if len(s) < users {
			return false
		}
		for _, ks := range s {
			if len(ks) != 2 {
				return false
			}
		}
		return true
	}
	start := time.Now()
	if _, err := b.createKeys(ctx, "keys", n, func(i int) string { return fmt.Sprintf("user-%d", i%users) }, never); err != nil {
		return r, err
	}
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) { return converged(), nil }); err != nil {
		return r, fmt.Errorf("did not converge to 2 Active per user")
	}
	r.KeymintSeconds = time.Since(start).Seconds()
	// Delete every Active key once: the next two of each user take over.
	deleted := map[string]bool{}
	for _, ks := range snapshot() {
		for _, name := range ks {
			if err := b.env.Client.Delete(ctx, &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: name}}); err != nil {
				return r, err
			}
			deleted[name] = true
		}
	}
	drain := time.Now()
	// Converged again only with keys other than those deleted: the watch
	// may not have seen the deletions yet.
	handedOn := func() bool {
		for _, ks := range snapshot() {
			for _, name := range ks {
				if deleted[name] {
					return false
				}
			}
		}
		return converged()
	}
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) { return handedOn(), nil }); err != nil {
		return r, fmt.Errorf("the queue did not move on after deletions")
	}
	mu.Lock()
	r.Notes = append(r.Notes, fmt.Sprintf("at most %d Active per user at any observed moment; next keys Active %.2fs after deletions", maxSeen, time.Since(drain).Seconds()))
	if maxSeen > 2 {
		r.Notes = append(r.Notes, "CAP VIOLATED")
	}
	mu.Unlock()
	return r, nil
}

func slicesOf(m map[string]bool) []string {
	return sortedKeys(maps.Keys(m))
}

// expiryPrecision: n keys with the same at; none loses its Secret before
// at, and the lag of each Secret's deletion after at is measured.
func (b *bench) expiryPrecision(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "expiry", N: n}
	kw, err := b.prepare(ctx)
	if err != nil {
		return r, err
	}
	defer kw.Stop()
	floorP50, floorP99, err := b.deleteFloor(ctx, n)
	if err != nil {
		return r, fmt.Errorf("deletion floor: %w", err)
	}
	r.FloorSeconds = floorP99
	// Time to issue them all first (the floor rate, generously), then expire.
	at := time.Now().Add(20*time.Second + time.Duration(n)*20*time.Millisecond).Truncate(time.Second)
	exp := keymintv1alpha1.Expiration{At: &metav1.Time{Time: at}}
	dw, err := b.watchDeletions(ctx, "keys")
	if err != nil {
		return r, err
	}
	defer dw.Stop()
	if _, err := b.createKeys(ctx, "keys", n, func(i int) string { return fmt.Sprintf("user-%d", i) }, exp); err != nil {
		return r, err
	}
	if err := kw.waitFor(ctx, n, time.Until(at)); err != nil {
		return r, fmt.Errorf("only %d of %d keys were Active before at: %w", kw.count(), n, err)
	}
	gone, err := dw.waitFor(ctx, n, time.Until(at)+time.Minute)
	if err != nil {
		return r, err
	}
	early := 0
	for _, t := range gone {
		if t.Before(at) {
			early++
		}
	}
	r.P50Seconds, r.P99Seconds = lagsAfter(at, gone)
	r.Ratio = r.P99Seconds / r.FloorSeconds
	r.Notes = append(r.Notes, fmt.Sprintf("deletion floor (%d Secrets deleted at once by %d bare clients) p50 %.2f s, p99 %.2f s",
		n, deleteWorkers, floorP50, floorP99))
	r.Notes = append(r.Notes, fmt.Sprintf("%d Secrets gone before at; p50/p99 are Secret deletion minus at", early))
	return r, nil
}

// isolation: the peak RSS of a manager starting over n keys, without and
// then with unrelated 100 KiB Secrets in other namespaces. Both managers do
// the same work (a resync of the same keys), so the difference is what the
// unrelated Secrets cost.
func (b *bench) isolation(ctx context.Context, n, unrelated int) (result, error) {
	r := result{Scenario: "isolation", N: n}
	if err := b.activeKeys(ctx, n); err != nil {
		return r, err
	}
	resync := func() (float64, error) {
		b.stop()
		if err := b.startManager(ctx); err != nil {
			return 0, err
		}
		b.settle()
		return b.peakRSSMiB(), nil
	}
	without, err := resync()
	if err != nil {
		return r, err
	}
	payload := make([]byte, 100<<10)
	for i := range 10 {
		if err := b.namespace(ctx, fmt.Sprintf("unrelated-%d", i)); err != nil {
			return r, err
		}
	}
	if err := b.parallel(unrelated, func(i int) error {
		return b.env.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("unrelated-%d", i%10), Name: fmt.Sprintf("s-%d", i)},
			Data:       map[string][]byte{"blob": payload},
		})
	}); err != nil {
		return r, err
	}
	with, err := resync()
	if err != nil {
		return r, err
	}
	r.PeakRSSMiB = with
	r.Notes = append(r.Notes, fmt.Sprintf("peak RSS %.1f MiB without and %.1f MiB with %d unrelated 100 KiB Secrets (%+.1f MiB)", without, with, unrelated, with-without))
	return r, nil
}

// scale: n keys for n/2 users converge; Go heap per key after settling.
func (b *bench) scale(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "scale", N: n}
	if err := b.startManager(ctx); err != nil {
		return r, err
	}
	empty, err := b.liveHeap("")
	if err != nil {
		return r, err
	}
	if err := b.namespace(ctx, "keys"); err != nil {
		return r, err
	}
	kw, err := b.watchKeys(ctx, "keys")
	if err != nil {
		return r, err
	}
	defer kw.Stop()
	start := time.Now()
	if _, err := b.createKeys(ctx, "keys", n, func(i int) string { return fmt.Sprintf("user-%d", i/2) }, never); err != nil {
		return r, err
	}
	if err := kw.waitFor(ctx, n, 15*time.Minute); err != nil {
		return r, fmt.Errorf("%d of %d Active: %w", kw.count(), n, err)
	}
	r.KeymintSeconds = time.Since(start).Seconds()
	b.settle()
	burst, err := b.liveHeap("")
	if err != nil {
		return r, err
	}
	r.PeakRSSMiB = b.peakRSSMiB()
	// A manager started over the converged keys holds what the keys cost
	// for as long as they exist. Right after the burst the first one also
	// holds every Event it recorded, which client-go's events broadcaster
	// keeps 6 to 12 minutes to build series: that memory follows the rate of
	// Events, not the number of keys.
	b.stop()
	if err := b.startManager(ctx); err != nil {
		return r, err
	}
	if err := b.reconciled(ctx, n); err != nil {
		return r, err
	}
	b.settle()
	steady, err := b.liveHeap(heapProfile)
	if err != nil {
		return r, err
	}
	// Per key counts what the manager holds: the live heap, not the
	// garbage waiting for the next collection.
	r.HeapMiB = steady / (1 << 20)
	r.HeapPerKeyBytes = (steady - empty) / float64(n)
	r.Notes = append(r.Notes, fmt.Sprintf("heap per key is of a manager restarted over the converged keys; right after the burst, with its Events, it was %.0f B",
		(burst-empty)/float64(n)))
	return r, nil
}

// reconciled waits until the manager has finished n reconciles.
func (b *bench) reconciled(ctx context.Context, n int) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(context.Context) (bool, error) {
		m, err := b.scrape()
		return err == nil && m.reconciles >= float64(n), nil
	})
}

// liveHeap makes the manager collect garbage, saving a heap profile to
// path unless it is empty, and returns its live heap.
func (b *bench) liveHeap(path string) (float64, error) {
	if err := b.collectGarbage(path); err != nil {
		return 0, err
	}
	m, err := b.scrape()
	return m.liveHeap, err
}

// prepare starts the manager, a namespace "keys" and a watch of its keys.
func (b *bench) prepare(ctx context.Context) (*keyWatch, error) {
	if err := b.startManager(ctx); err != nil {
		return nil, err
	}
	if err := b.namespace(ctx, "keys"); err != nil {
		return nil, err
	}
	return b.watchKeys(ctx, "keys")
}

// issueAll creates n never-expiring keys for n users and waits until all
// are Active.
func (b *bench) issueAll(ctx context.Context, kw *keyWatch, n int) error {
	if _, err := b.createKeys(ctx, "keys", n, func(i int) string { return fmt.Sprintf("user-%d", i) }, never); err != nil {
		return err
	}
	if err := kw.waitFor(ctx, n, 5*time.Minute); err != nil {
		return fmt.Errorf("%d of %d keys Active: %w", kw.count(), n, err)
	}
	return nil
}

// activeKeys runs the manager until n keys of n users are Active and it is
// idle again.
func (b *bench) activeKeys(ctx context.Context, n int) error {
	kw, err := b.prepare(ctx)
	if err != nil {
		return err
	}
	defer kw.Stop()
	if err := b.issueAll(ctx, kw, n); err != nil {
		return err
	}
	b.settle()
	return nil
}
