package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// revealsPerUser stays within one actor's burst of reveals (20).
const revealsPerUser = 20

// reveal: n reveals of their own keys by users, through keymint's API (an
// APIKeyReveal: kube-apiserver, the aggregator, delegated authentication
// and authorization, the key's Secret read, a durable record in the API
// server), beside a floor of n direct gets of the same Secrets by the same
// users with the same clients (the owner grant allows them). The result is
// the time for all n, and each request's p50 and p99.
func (b *bench) reveal(ctx context.Context, n int) (result, error) {
	r := result{Scenario: "reveal", N: n}
	api := b.env.API
	b.args = append(b.args, "--api-bind-address="+api.Addr(), "--api-tls-cert-file="+api.CertFile, "--api-tls-key-file="+api.KeyFile,
		"--authentication-kubeconfig="+api.Kubeconfig, "--authorization-kubeconfig="+api.Kubeconfig, "--audit-store=api")
	kw, err := b.prepare(ctx)
	if err != nil {
		return r, err
	}
	defer kw.Stop()
	users := (n + revealsPerUser - 1) / revealsPerUser
	if err := b.parallel(users, func(i int) error {
		return b.env.Client.Create(ctx, &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: fmt.Sprintf("k-%d", i)},
			Spec:       keymintv1alpha1.APIKeySpec{User: fmt.Sprintf("user-%d", i), Expiration: keymintv1alpha1.Expiration{Never: new(true)}},
		})
	}); err != nil {
		return r, err
	}
	if err := kw.waitFor(ctx, users, 5*time.Minute); err != nil {
		return r, fmt.Errorf("%d of %d keys Active: %w", kw.count(), users, err)
	}
	if err := api.WaitAvailable(ctx, b.env.Config, time.Minute); err != nil {
		return r, err
	}
	clients := make([]client.Client, users)
	for i := range clients {
		cfg := rest.CopyConfig(b.env.Config)
		cfg.QPS, cfg.Burst = 1000, 1000
		cfg.Impersonate = rest.ImpersonationConfig{UserName: fmt.Sprintf("user-%d", i), Groups: []string{"system:authenticated"}}
		if clients[i], err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			return r, err
		}
	}
	// The APIService may say Available before the API authenticates its
	// callers: wait for an authenticated answer.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return b.env.Client.List(ctx, &auditv1alpha1.AuditRecordList{}, client.InNamespace("keys")) == nil, nil
	}); err != nil {
		return r, fmt.Errorf("keymint's API does not answer: %w", err)
	}
	floor, floorTook, err := b.timed(n, func(i int) error {
		u := i % users
		return clients[u].Get(ctx, client.ObjectKey{Namespace: "keys", Name: fmt.Sprintf("k-%d", u)}, &corev1.Secret{})
	})
	if err != nil {
		return r, fmt.Errorf("floor: %w", err)
	}
	reveals, took, err := b.timed(n, func(i int) error {
		u := i % users
		return clients[u].Create(ctx, &auditv1alpha1.APIKeyReveal{ObjectMeta: metav1.ObjectMeta{Namespace: "keys"},
			Spec: auditv1alpha1.APIKeyRevealSpec{Name: fmt.Sprintf("k-%d", u)}})
	})
	if err != nil {
		return r, fmt.Errorf("reveals: %w", err)
	}
	r.FloorSeconds, r.KeymintSeconds = floorTook.Seconds(), took.Seconds()
	r.Ratio = r.KeymintSeconds / r.FloorSeconds
	r.P50Seconds, r.P99Seconds = percentiles(reveals)
	floorP50, floorP99 := percentiles(floor)
	r.Notes = append(r.Notes,
		fmt.Sprintf("%.0f reveals/s (floor: %.0f Secret gets/s); floor p50 %.3f s, p99 %.3f s; %d users, %d workers",
			float64(n)/took.Seconds(), float64(n)/floorTook.Seconds(), floorP50, floorP99, users, b.workers))
	return r, nil
}

// timed runs do(i) for i in [0, n) on the bench's workers, and returns
// each call's duration in seconds and the time for all.
func (b *bench) timed(n int, do func(i int) error) (each []float64, all time.Duration, err error) {
	var mu sync.Mutex
	start := time.Now()
	err = b.parallel(n, func(i int) error {
		t := time.Now()
		if err := do(i); err != nil {
			return err
		}
		mu.Lock()
		each = append(each, time.Since(t).Seconds())
		mu.Unlock()
		return nil
	})
	return each, time.Since(start), err
}
