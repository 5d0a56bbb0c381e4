// The reconciler's view of the cap on Active keys a user holds, which
// internal/slots enforces with Leases.

package controllers

import "github.com/keymint/keymint/internal/slots"

func (r *APIKeyReconciler) cap() *slots.Cap {
	return &slots.Cap{Cache: r.Client, Live: r.APIReader, Writer: r.Client, Namespace: r.SlotNamespace, Max: r.MaxKeysPerUser}
}
