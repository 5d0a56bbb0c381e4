// Package auditserver turns kube-apiserver's audit stream into keymint's
// audit trail: it serves the audit webhook backend (views, denied views and
// the actors of deletions, which only the API server sees) and the export of
// the trail to administrators.
package auditserver

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// KeyRef names a key in the audit trail.
type KeyRef struct {
	Namespace, Name, UID, User, KeyID string
}

// ManagedSecret is a Secret keymint minted, as a list's selectors see it.
type ManagedSecret struct {
	Name, Namespace string
	Labels          map[string]string
	Type            corev1.SecretType
	// Created is the Secret's creation time (to the second); Deleted, when
	// set, when it was seen deleted.
	Created, Deleted time.Time
	Key              KeyRef
}

// existedDuring reports whether the Secret may have existed at some time
// between from and to: not created in a later second, not deleted before.
func (s ManagedSecret) existedDuring(from, to time.Time) bool {
	return !s.Created.After(to) && (s.Deleted.IsZero() || !s.Deleted.Before(from))
}

// fields are the Secret fields a field selector can name.
func (s ManagedSecret) fields() fields.Set {
	return fields.Set{"metadata.name": s.Name, "metadata.namespace": s.Namespace, "type": string(s.Type)}
}

// Resolver tells which keys an audited request touched.
type Resolver interface {
	// Secret returns the key held by the Secret namespace/name, also shortly
	// after the Secret was deleted; false if keymint does not manage it.
	Secret(namespace, name string) (KeyRef, bool)
	// DeletedSecret is Secret for a Secret just deleted: the key it held,
	// though the controller may have reissued one under its name since.
	DeletedSecret(namespace, name string) (KeyRef, bool)
	// Secrets returns the managed Secrets in namespace ("" for all).
	Secrets(namespace string) []ManagedSecret
	// APIKey returns the APIKey namespace/name, also shortly after it was
	// deleted, and whether it still exists and is not being deleted.
	APIKey(namespace, name string) (ref KeyRef, live, ok bool)
}

// WatchTracker follows the Secret watches that are open, so that what they
// may return stays resolvable until they end (see CacheResolver).
type WatchTracker interface {
	WatchStarted(auditID string)
	WatchEnded(auditID string)
}

// secretWatch reports whether ev is a watch of Secrets by someone whose
// reads are recorded.
func secretWatch(ev *auditv1.Event, ignored func(username string) bool) bool {
	return ev.Verb == "watch" && ev.ObjectRef != nil && ev.ObjectRef.APIGroup == "" && ev.ObjectRef.Resource == "secrets" &&
		(ev.ImpersonatedUser != nil || !ignored(ev.User.Username))
}

// nodePrefix starts the username of every kubelet.
const nodePrefix = "system:node:"

// Translate returns the audit records an audit event amounts to: reads of
// managed Secrets are views (a kubelet's are mounts), a forbidden read is
// one denied view, and deletions of an APIKey or of its Secret name the
// actor of the Deleted or Reissued record. Only stage ResponseComplete
// counts. Requests by an ignored user (the operator itself) are not
// recorded, unless someone impersonated it.
func Translate(ev *auditv1.Event, r Resolver, ignored func(username string) bool) []audit.Record {
	if ev.Stage != auditv1.StageResponseComplete || ev.ObjectRef == nil || ev.ResponseStatus == nil || dryRun(ev) {
		return nil
	}
	actor, impersonator := ev.User, (*authenticationv1.UserInfo)(nil)
	if ev.ImpersonatedUser != nil {
		actor, impersonator = *ev.ImpersonatedUser, &ev.User
	} else if ignored(actor.Username) {
		return nil
	}
	ref, code := ev.ObjectRef, ev.ResponseStatus.Code
	var keys []KeyRef
	var action audit.Action
	switch {
	case ref.APIGroup == "" && ref.Resource == "secrets" && ref.Subresource == "":
		action = readAction(code, actor.Username)
		switch ev.Verb {
		case "get":
			if k, ok := r.Secret(ref.Namespace, ref.Name); ok && action != "" {
				keys = []KeyRef{k}
			}
		case "list", "watch":
			if action == audit.ActionViewDenied {
				return refusedList(ev, r, actor, impersonator)
			}
			if action != "" {
				keys = listed(ev, r)
			}
		case "delete":
			// The controller reissues the key; this names who revoked it. A
			// Secret deleted with its APIKey (by the garbage collector) is
			// part of the APIKey's deletion.
			if k, ok := r.DeletedSecret(ref.Namespace, ref.Name); ok && success(code) {
				if _, live, found := r.APIKey(k.Namespace, k.Name); found && live {
					action, keys = audit.ActionReissued, []KeyRef{k}
				}
			}
		}
	case ref.APIGroup == keymintv1alpha1.GroupVersion.Group && ref.Resource == "apikeys" && ref.Subresource == "":
		if ev.Verb == "delete" && success(code) {
			if k, _, ok := r.APIKey(ref.Namespace, ref.Name); ok {
				action, keys = audit.ActionDeleted, []KeyRef{k}
			}
		}
	}
	records := make([]audit.Record, 0, len(keys))
	for _, k := range keys {
		rec := requestRecord(ev, action, actor, impersonator)
		rec.ID = audit.RequestRecordID(vouched(ev), string(action), k.UID, k.KeyID)
		rec.Namespace, rec.Name, rec.UID, rec.User, rec.KeyID = k.Namespace, k.Name, k.UID, audit.Truncate(k.User), k.KeyID
		rec.Message = message(action, actor.Username, ev, code)
		records = append(records, rec)
	}
	return records
}

// vouched is what the API server vouches for about an audited request, the
// identity of its records: the whole event but its annotations and the
// objects a policy level may add.
func vouched(ev *auditv1.Event) any {
	return []any{ev.AuditID, ev.Stage, ev.Verb, ev.RequestURI, ev.User, ev.ImpersonatedUser, ev.SourceIPs, ev.UserAgent,
		ev.ObjectRef, ev.ResponseStatus.Code, ev.RequestReceivedTimestamp.UTC().Format(time.RFC3339Nano), ev.StageTimestamp.UTC().Format(time.RFC3339Nano)}
}

// dryRun reports whether ev is a dry run of a write, which did nothing: by
// its query, or by the DeleteOptions a delete sends as its body (which the
// policy logs at level Request for deletes). A read takes no dryRun, so a
// read that names one is still a read.
func dryRun(ev *auditv1.Event) bool {
	switch ev.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
	default:
		return false
	}
	if u, err := url.ParseRequestURI(ev.RequestURI); err == nil && len(u.Query()["dryRun"]) > 0 {
		return true
	}
	if ev.RequestObject == nil {
		return false
	}
	var opts struct {
		DryRun []string `json:"dryRun"`
	}
	return json.Unmarshal(ev.RequestObject.Raw, &opts) == nil && len(opts.DryRun) > 0
}

// requestRecord is a record of action by actor with what the request tells.
// The user agent is the client's to choose, so it is cut short.
func requestRecord(ev *auditv1.Event, action audit.Action, actor authenticationv1.UserInfo, impersonator *authenticationv1.UserInfo) audit.Record {
	rec := audit.Record{
		Time:      ev.StageTimestamp.UTC(),
		Action:    action,
		Actor:     audit.Actor{Username: actor.Username, Groups: actor.Groups},
		SourceIPs: ev.SourceIPs,
		UserAgent: audit.Truncate(ev.UserAgent),
		AuditID:   string(ev.AuditID),
	}
	if impersonator != nil {
		rec.Impersonator = &audit.Actor{Username: impersonator.Username, Groups: impersonator.Groups}
	}
	return rec
}

// refusedList is the one record of a forbidden list or watch of Secrets:
// it returned nothing, so it viewed nothing, whatever number of keys its
// scope holds. It names the scope it asked for, and is written only when
// that scope holds a key.
func refusedList(ev *auditv1.Event, r Resolver, actor authenticationv1.UserInfo, impersonator *authenticationv1.UserInfo) []audit.Record {
	keys := listed(ev, r)
	if len(keys) == 0 {
		return nil
	}
	q := url.Values{}
	if u, err := url.ParseRequestURI(ev.RequestURI); err == nil {
		q = u.Query()
	}
	scope := &audit.Scope{
		Namespace:     ev.ObjectRef.Namespace,
		LabelSelector: audit.Truncate(q.Get("labelSelector")),
		FieldSelector: audit.Truncate(q.Get("fieldSelector")),
		Keys:          len(keys),
	}
	rec := requestRecord(ev, audit.ActionViewDenied, actor, impersonator)
	rec.ID = audit.RequestRecordID(vouched(ev), string(audit.ActionViewDenied))
	rec.Namespace, rec.Scope = scope.Namespace, scope
	where := "all namespaces"
	if scope.Namespace != "" {
		where = "namespace " + scope.Namespace
	}
	rec.Message = fmt.Sprintf("%s was refused (%d) a %s of the Secrets in %s, which hold %d keys",
		actor.Username, ev.ResponseStatus.Code, ev.Verb, where, len(keys))
	return []audit.Record{rec}
}

// readAction is what a read of a managed Secret that ended with code is.
func readAction(code int32, username string) audit.Action {
	switch {
	case code == 403:
		return audit.ActionViewDenied
	case !success(code):
		return ""
	case strings.HasPrefix(username, nodePrefix):
		return audit.ActionMounted
	}
	return audit.ActionViewed
}

func success(code int32) bool { return code >= 200 && code < 300 }

// listed returns the keys whose Secrets a list or watch could return: in
// its namespace (or all), matching its selectors, existing at some time
// while it ran (a watch also sees the Secrets created during it). A
// selector that does not parse is taken as none: the API server would have
// refused the request.
func listed(ev *auditv1.Event, r Resolver) []KeyRef {
	u, err := url.ParseRequestURI(ev.RequestURI)
	if err != nil {
		return nil
	}
	q := u.Query()
	labelSel, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil
	}
	fieldSel, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil
	}
	var keys []KeyRef
	from, to := ev.RequestReceivedTimestamp.Time, ev.StageTimestamp.Time
	for _, s := range r.Secrets(ev.ObjectRef.Namespace) {
		if labelSel.Matches(labels.Set(s.Labels)) && fieldSel.Matches(s.fields()) && (from.IsZero() || s.existedDuring(from, to)) {
			keys = append(keys, s.Key)
		}
	}
	return keys
}

func message(action audit.Action, username string, ev *auditv1.Event, code int32) string {
	switch action {
	case audit.ActionDeleted:
		return fmt.Sprintf("%s deleted the APIKey", username)
	case audit.ActionReissued:
		return fmt.Sprintf("%s deleted the key's Secret; the controller issues a new key", username)
	case audit.ActionViewDenied:
		return fmt.Sprintf("%s was refused (%d) a %s of the key's Secret", username, code, ev.Verb)
	case audit.ActionMounted:
		return fmt.Sprintf("kubelet %s read the key's Secret (%s) for a pod on its node", strings.TrimPrefix(username, nodePrefix), ev.Verb)
	}
	return fmt.Sprintf("%s read the key's Secret (%s)", username, ev.Verb)
}
