package auditstore

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// DefaultRetention is how long records are kept by default: 400 days, a
// year's audit and a month to export it.
const DefaultRetention = 400 * 24 * time.Hour

// Retention deletes the records older than Keep, whole days at a time, on
// the leader. Age is the only measure: a count or size limit would let
// whoever writes the most records (anyone can be refused a read) push out
// everyone else's; the aggregation of refusals bounds what one actor adds.
type Retention struct {
	Store *Store
	Keep  time.Duration
	Clock clock.WithTicker
	Every time.Duration
}

// Start deletes now and then every Every until ctx ends.
func (r *Retention) Start(ctx context.Context) error {
	if r.Every <= 0 {
		r.Every = time.Hour
	}
	ticker := r.Clock.NewTicker(r.Every)
	defer ticker.Stop()
	for {
		if err := r.Prune(ctx, r.Clock.Now()); err != nil {
			log.FromContext(ctx).Error(err, "deleting audit records past their retention")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// Prune deletes the entries of the days wholly before now - Keep.
func (r *Retention) Prune(ctx context.Context, now time.Time) error {
	cutoff := now.Add(-r.Keep).UTC().Format("20060102")
	req, err := labels.NewRequirement(keymintv1alpha1.LabelAuditDay, selection.LessThan, []string{cutoff})
	if err != nil {
		return err
	}
	return r.Store.Client.DeleteAllOf(ctx, &keymintv1alpha1.AuditEntry{}, client.InNamespace(r.Store.Namespace),
		client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*req)})
}
