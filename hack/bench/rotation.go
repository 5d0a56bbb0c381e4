package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// rotation: n keys with spec.rotation, of n users, renew at the same
// second; the lag from that second to each Secret holding its successor
// (p50, p99; target p99 ≤ 1 s), beside a floor of n bare Secret updates by
// as many clients on the same API server, and the requests per renewal.
//
// The manager runs on the real clock, on which no months key comes due
// within a run: the renewals are in-place rotation requests all stamped
// with that second, sent by the bench's workers when it starts, which run
// the same renewal (a second slot, the successor into the same Secret, the
// status) as a renewal time does.
func (b *bench) rotation(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "rotation", N: n}
	kw, err := b.prepare(ctx)
	if err != nil {
		return r, err
	}
	defer kw.Stop()
	floorP50, floorP99, err := b.updateFloor(ctx, n)
	if err != nil {
		return r, fmt.Errorf("update floor: %w", err)
	}
	r.FloorSeconds = floorP99
	if err := b.parallel(n, func(i int) error {
		return b.env.Client.Create(ctx, &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: fmt.Sprintf("k-%d", i)},
			Spec: keymintv1alpha1.APIKeySpec{User: fmt.Sprintf("user-%d", i), Expiration: keymintv1alpha1.Expiration{Months: ptr.To[int32](12)},
				Rotation: &keymintv1alpha1.Rotation{}},
		})
	}); err != nil {
		return r, err
	}
	if err := kw.waitFor(ctx, n, 5*time.Minute); err != nil {
		return r, fmt.Errorf("%d of %d keys Active: %w", kw.count(), n, err)
	}
	b.settle()
	renewals, err := b.watchSecrets(ctx, "keys", func(ev watch.Event, s *corev1.Secret) bool {
		return ev.Type == watch.Modified && s.Annotations[keymintv1alpha1.AnnotationRevision] == "2"
	})
	if err != nil {
		return r, err
	}
	defer renewals.Stop()
	before, err := b.scrape()
	if err != nil {
		return r, err
	}
	at := time.Now().Add(2 * time.Second).Truncate(time.Second)
	time.Sleep(time.Until(at))
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q,%q:"1h"}}}`,
		keymintv1alpha1.AnnotationRotateRequestedAt, at.UTC().Format(time.RFC3339), keymintv1alpha1.AnnotationRotateGrace)
	var mu sync.Mutex
	acked := map[string]time.Time{}
	if err := b.parallel(n, func(i int) error {
		key := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: fmt.Sprintf("k-%d", i)}}
		err := b.env.Client.Patch(ctx, key, client.RawPatch(types.MergePatchType, patch))
		mu.Lock()
		acked[key.Name] = time.Now()
		mu.Unlock()
		return err
	}); err != nil {
		return r, err
	}
	r.Notes = append(r.Notes, fmt.Sprintf("the %d rotation requests (APIKey patches through the admission policies) returned within %.2f s", n, time.Since(at).Seconds()))
	renewed, err := renewals.waitFor(ctx, n, 2*time.Minute)
	if err != nil {
		return r, err
	}
	// A renewal time comes due with no write at all; a request is due once
	// the API server has it: the lag counts from its acknowledgement.
	r.P50Seconds, r.P99Seconds = latencies(acked, renewed)
	all50, all99 := lagsAfter(at, renewed)
	r.Notes = append(r.Notes, fmt.Sprintf("from the second the requests began, including sending them: p50 %.2f s, p99 %.2f s", all50, all99))
	r.KeymintSeconds = r.P99Seconds
	r.Ratio = r.P99Seconds / r.FloorSeconds
	b.settle()
	after, err := b.scrape()
	if err != nil {
		return r, err
	}
	r.RequestsPerKey = perKey(before.requests, after.requests, n)
	r.PeakRSSMiB, r.HeapMiB = b.peakRSSMiB(), after.heap/(1<<20)
	r.Notes = append(r.Notes, fmt.Sprintf("update floor (%d Secrets updated at once by %d bare clients) p50 %.2f s, p99 %.2f s; p50/p99 are the successor in the Secret minus the request's acknowledgement (goal p99 ≤ 1 s)",
		n, deleteWorkers, floorP50, floorP99))
	return r, nil
}

// updateFloor is the rotation scenario's floor: n Secrets updated at once
// by a bare client with deleteWorkers workers, one request each, on the
// same API server; p50 and p99 of (update seen by a watch − start).
func (b *bench) updateFloor(ctx context.Context, n int) (p50, p99 float64, err error) {
	const ns = "floor-update"
	if err := b.namespace(ctx, ns); err != nil {
		return 0, 0, err
	}
	if err := b.parallel(n, func(i int) error { return b.env.Client.Create(ctx, floorSecret(ns, i)) }); err != nil {
		return 0, 0, err
	}
	uw, err := b.watchSecrets(ctx, ns, func(ev watch.Event, _ *corev1.Secret) bool { return ev.Type == watch.Modified })
	if err != nil {
		return 0, 0, err
	}
	defer uw.Stop()
	patch := []byte(`{"data":{"api-key":"` + "bmV4dA==" + `"}}`)
	start := time.Now()
	if err := parallel(deleteWorkers, n, func(i int) error {
		return b.env.Client.Patch(ctx, floorSecret(ns, i), client.RawPatch(types.MergePatchType, patch))
	}); err != nil {
		return 0, 0, err
	}
	updated, err := uw.waitFor(ctx, n, time.Minute)
	if err != nil {
		return 0, 0, err
	}
	p50, p99 = lagsAfter(start, updated)
	return p50, p99, nil
}
