// Package auditstore keeps the audit trail in the API server, one
// AuditEntry a record in keymint's namespace (--audit-store=api). etcd is
// replicated and durable: a record is acknowledged once the API server has
// stored it, and a record one replica wrote is read through any other,
// after the first is gone. An entry's name is a hash of its record's ID,
// so a record written again (a retried batch, two replicas at once) is
// stored once. Retention deletes entries by day; nothing an ordinary user
// does can delete or evict one.
package auditstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// Parallel bounds the creates one write sends at once.
const Parallel = 16

// WriteTimeout bounds one write: a caller that gets an error retries.
const WriteTimeout = 30 * time.Second

// Store writes records as AuditEntries in Namespace, and reads them.
type Store struct {
	// Client reaches the API server directly: entries are never cached.
	Client    client.Client
	Namespace string
}

// Write stores records; it returns once every one is stored.
func (s *Store) Write(records []audit.Record) error {
	_, err := s.Append(records)
	return err
}

// Append stores records and returns those that were not stored before, so
// that what follows it in an audit.Multi (stdout) gets each record once.
func (s *Store) Append(records []audit.Record) ([]audit.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), WriteTimeout)
	defer cancel()
	fresh := make([]bool, len(records))
	errs := make([]error, len(records))
	sem := make(chan struct{}, Parallel)
	var wg sync.WaitGroup
	for i := range records {
		entry, err := s.Entry(records[i])
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := s.Client.Create(ctx, entry)
			switch {
			case err == nil:
				fresh[i] = true
			case apierrors.IsAlreadyExists(err): // stored before: once is enough
			default:
				errs[i] = fmt.Errorf("storing audit record %s: %w", entry.Name, err)
			}
		}()
	}
	wg.Wait()
	var out []audit.Record
	for i, r := range records {
		if fresh[i] {
			out = append(out, r)
		}
	}
	for _, err := range errs {
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// Entry is the AuditEntry that stores r.
func (s *Store) Entry(r audit.Record) (*keymintv1alpha1.AuditEntry, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	labels := audit.Labels(r)
	labels[keymintv1alpha1.LabelManagedBy] = keymintv1alpha1.ManagedBy
	return &keymintv1alpha1.AuditEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: audit.Name(r), Labels: labels},
		Record:     runtime.RawExtension{Raw: raw},
	}, nil
}

// +kubebuilder:rbac:groups=keymint.io,namespace=keymint-system,resources=auditentries,verbs=create;get;list;deletecollection

// RequiredPermissions are what the store needs in namespace: writing,
// reading and (the leader's retention) deleting AuditEntries.
func RequiredPermissions(namespace string) []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	for _, verb := range []string{"create", "get", "list", "deletecollection"} {
		out = append(out, authorizationv1.ResourceAttributes{Namespace: namespace, Group: keymintv1alpha1.GroupVersion.Group, Resource: "auditentries", Verb: verb})
	}
	return out
}
