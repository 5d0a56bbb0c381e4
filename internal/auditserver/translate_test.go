package auditserver

import (
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/keymint/keymint/internal/audit"
)

// fakeResolver knows two keys' Secrets in namespace team, one of them
// labelled tier=prod; a Secret created after the requests, one deleted
// before them and one deleted after them; and the APIKey "gone", deleted.
type fakeResolver struct{}

var (
	keyA = KeyRef{Namespace: "team", Name: "a", UID: "uid-a", User: "alice", KeyID: "kid_a"}
	keyB = KeyRef{Namespace: "team", Name: "b", UID: "uid-b", User: "bob", KeyID: "kid_b"}
	gone = KeyRef{Namespace: "team", Name: "gone", UID: "uid-gone", User: "alice", KeyID: "kid_gone"}
	// received is when the API server received every request below.
	received = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

func (fakeResolver) Secret(ns, name string) (KeyRef, bool) {
	for _, s := range (fakeResolver{}).Secrets(ns) {
		if s.Name == name {
			return s.Key, true
		}
	}
	return KeyRef{}, false
}

func (f fakeResolver) DeletedSecret(ns, name string) (KeyRef, bool) {
	if ns == "team" && name == "gone-secret" {
		return gone, true
	}
	return f.Secret(ns, name)
}

func (fakeResolver) Secrets(ns string) []ManagedSecret {
	if ns != "team" && ns != "" {
		return nil
	}
	return []ManagedSecret{
		{Name: "a-secret", Namespace: "team", Type: "keymint.io/api-key", Labels: map[string]string{"tier": "prod"}, Key: keyA},
		{Name: "b-secret", Namespace: "team", Type: "keymint.io/api-key", Key: keyB},
		{Name: "later", Namespace: "team", Type: "keymint.io/api-key", Created: received.Add(time.Second), Key: KeyRef{Name: "later"}},
		{Name: "before", Namespace: "team", Type: "keymint.io/api-key", Deleted: received.Add(-time.Second), Key: KeyRef{Name: "before"}},
		{Name: "after", Namespace: "team", Type: "keymint.io/api-key", Labels: map[string]string{"tier": "dev"}, Deleted: received.Add(time.Second), Key: KeyRef{Name: "after"}},
	}
}

func (fakeResolver) APIKey(ns, name string) (KeyRef, bool, bool) {
	switch name {
	case "a":
		return keyA, true, true
	case "gone":
		return gone, false, true
	}
	return KeyRef{}, false, false
}

func event(verb, user, uri, resource, ns, name string, code int32) *auditv1.Event {
	group := ""
	if resource == "apikeys" {
		group = "keymint.io"
	}
	return &auditv1.Event{
		AuditID:                  "id-1",
		Stage:                    auditv1.StageResponseComplete,
		Verb:                     verb,
		RequestURI:               uri,
		User:                     authenticationv1.UserInfo{Username: user, Groups: []string{"devs"}},
		SourceIPs:                []string{"10.0.0.7"},
		UserAgent:                "kubectl/v1.37.2",
		ObjectRef:                &auditv1.ObjectReference{Resource: resource, APIGroup: group, Namespace: ns, Name: name},
		ResponseStatus:           &metav1.Status{Code: code},
		RequestReceivedTimestamp: metav1.NewMicroTime(received),
		StageTimestamp:           metav1.NewMicroTime(received.Add(20 * time.Millisecond)),
	}
}

func TestTranslate(t *testing.T) {
	operator := func(u string) bool { return u == "system:serviceaccount:keymint-system:keymint-manager" }
	impersonated := event("get", "admin", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200)
	impersonated.ImpersonatedUser = &authenticationv1.UserInfo{Username: "carol"}
	longWatch := event("watch", "alice", "/api/v1/namespaces/team/secrets?watch=true", "secrets", "team", "", 200)
	longWatch.StageTimestamp = metav1.NewMicroTime(received.Add(10 * time.Minute))
	asOperator := event("get", "admin", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200)
	asOperator.ImpersonatedUser = &authenticationv1.UserInfo{Username: "system:serviceaccount:keymint-system:keymint-manager"}
	started := event("get", "alice", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200)
	started.Stage = auditv1.StageResponseStarted

	tests := []struct {
		name   string
		event  *auditv1.Event
		action audit.Action
		keys   []string
		actor  string
		note   string
	}{
		{name: "get is a view", event: event("get", "alice", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200),
			action: audit.ActionViewed, keys: []string{"a"}, actor: "alice", note: "alice read the key's Secret (get)"},
		{name: "get of another Secret is nothing", event: event("get", "alice", "/api/v1/namespaces/team/secrets/other", "secrets", "team", "other", 200)},
		{name: "not found is nothing", event: event("get", "alice", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 404)},
		{name: "forbidden get is a denied view", event: event("get", "mallory", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 403),
			action: audit.ActionViewDenied, keys: []string{"a"}, actor: "mallory", note: "mallory was refused (403) a get of the key's Secret"},
		{name: "kubelet get is a mount", event: event("get", "system:node:n1", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200),
			action: audit.ActionMounted, keys: []string{"a"}, actor: "system:node:n1", note: "kubelet n1 read the key's Secret (get) for a pod on its node"},
		{name: "kubelet watch of one Secret is a mount", event: event("watch", "system:node:n1", "/api/v1/namespaces/team/secrets?fieldSelector=metadata.name%3Db-secret&watch=true", "secrets", "team", "", 200),
			action: audit.ActionMounted, keys: []string{"b"}, actor: "system:node:n1"},
		{name: "list of the namespace views every key it could return", event: event("list", "alice", "/api/v1/namespaces/team/secrets", "secrets", "team", "", 200),
			action: audit.ActionViewed, keys: []string{"a", "b", "after"}, actor: "alice"},
		{name: "a watch also views the Secrets created while it ran", event: longWatch,
			action: audit.ActionViewed, keys: []string{"a", "b", "later", "after"}, actor: "alice"},
		{name: "list of all namespaces views every key", event: event("list", "alice", "/api/v1/secrets?limit=500", "secrets", "", "", 200),
			action: audit.ActionViewed, keys: []string{"a", "b", "after"}, actor: "alice"},
		{name: "label selector narrows a list", event: event("list", "alice", "/api/v1/namespaces/team/secrets?labelSelector=tier%3Dprod", "secrets", "team", "", 200),
			action: audit.ActionViewed, keys: []string{"a"}, actor: "alice"},
		{name: "a selector matching no key is no view", event: event("list", "alice", "/api/v1/namespaces/team/secrets?labelSelector=tier%3Dtest", "secrets", "team", "", 200)},
		{name: "a type selector for other Secrets is no view", event: event("list", "kcm", "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token", "secrets", "", "", 200)},
		{name: "a forbidden list is one denied view of its scope", event: event("list", "mallory", "/api/v1/namespaces/team/secrets", "secrets", "team", "", 403),
			action: audit.ActionViewDenied, keys: []string{""}, actor: "mallory", note: "mallory was refused (403) a list of the Secrets in namespace team, which hold 3 keys"},
		{name: "a forbidden list of all namespaces is one denied view", event: event("list", "mallory", "/api/v1/secrets", "secrets", "", "", 403),
			action: audit.ActionViewDenied, keys: []string{""}, actor: "mallory", note: "mallory was refused (403) a list of the Secrets in all namespaces, which hold 3 keys"},
		{name: "a forbidden list of a scope without keys is nothing", event: event("list", "mallory", "/api/v1/namespaces/other/secrets", "secrets", "other", "", 403)},
		{name: "impersonating the operator is recorded", event: asOperator,
			action: audit.ActionViewed, keys: []string{"a"}, actor: "system:serviceaccount:keymint-system:keymint-manager"},
		{name: "list in another namespace is nothing", event: event("list", "alice", "/api/v1/namespaces/other/secrets", "secrets", "other", "", 200)},
		{name: "the operator is ignored", event: event("get", "system:serviceaccount:keymint-system:keymint-manager", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200)},
		{name: "impersonation names the impersonated user", event: impersonated,
			action: audit.ActionViewed, keys: []string{"a"}, actor: "carol"},
		{name: "only ResponseComplete counts", event: started},
		{name: "deleting a live key's Secret is a reissue", event: event("delete", "alice", "/api/v1/namespaces/team/secrets/a-secret", "secrets", "team", "a-secret", 200),
			action: audit.ActionReissued, keys: []string{"a"}, actor: "alice", note: "alice deleted the key's Secret; the controller issues a new key"},
		{name: "the Secret of a deleted key is part of its deletion", event: event("delete", "system:serviceaccount:kube-system:generic-garbage-collector", "/api/v1/namespaces/team/secrets/gone-secret", "secrets", "team", "gone-secret", 200)},
		{name: "deleting an APIKey names the actor", event: event("delete", "alice", "/apis/keymint.io/v1alpha1/namespaces/team/apikeys/gone", "apikeys", "team", "gone", 200),
			action: audit.ActionDeleted, keys: []string{"gone"}, actor: "alice", note: "alice deleted the APIKey"},
		{name: "a refused deletion is nothing", event: event("delete", "mallory", "/apis/keymint.io/v1alpha1/namespaces/team/apikeys/a", "apikeys", "team", "a", 403)},
		{name: "reading an APIKey is nothing", event: event("get", "alice", "/apis/keymint.io/v1alpha1/namespaces/team/apikeys/a", "apikeys", "team", "a", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Translate(tt.event, fakeResolver{}, operator)
			if len(got) != len(tt.keys) {
				t.Fatalf("got %d records %+v, want keys %v", len(got), got, tt.keys)
			}
			for i, r := range got {
				if r.Name != tt.keys[i] || r.Action != tt.action || r.Actor.Username != tt.actor {
					t.Errorf("record %d = %s %s by %s, want %s %s by %s", i, r.Action, r.Name, r.Actor.Username, tt.action, tt.keys[i], tt.actor)
				}
				if r.AuditID != "id-1" || r.SourceIPs[0] != "10.0.0.7" || r.UserAgent != "kubectl/v1.37.2" || !r.Time.Equal(tt.event.StageTimestamp.Time) {
					t.Errorf("record %d lost the request's details: %+v", i, r)
				}
				if tt.note != "" && r.Message != tt.note {
					t.Errorf("message = %q, want %q", r.Message, tt.note)
				}
				if impersonator := tt.event.User.Username; tt.event.ImpersonatedUser != nil &&
					(r.Impersonator == nil || r.Impersonator.Username != impersonator) {
					t.Errorf("impersonator = %+v, want %s", r.Impersonator, impersonator)
				}
			}
		})
	}
}

func TestARefusedListNamesItsScopeAndCutsFreeText(t *testing.T) {
	ev := event("list", "mallory", "/api/v1/secrets?labelSelector=tier%3Dprod&fieldSelector=type%3Dkeymint.io%2Fapi-key", "secrets", "", "", 403)
	ev.UserAgent = strings.Repeat("A", 1024)
	got := Translate(ev, fakeResolver{}, func(string) bool { return false })
	if len(got) != 1 {
		t.Fatalf("got %d records, want 1", len(got))
	}
	want := audit.Scope{LabelSelector: "tier=prod", FieldSelector: "type=keymint.io/api-key", Keys: 1}
	if got[0].Scope == nil || *got[0].Scope != want {
		t.Errorf("scope = %+v, want %+v", got[0].Scope, want)
	}
	if len(got[0].UserAgent) != audit.MaxTextBytes {
		t.Errorf("user agent of %d bytes, want it cut to %d", len(got[0].UserAgent), audit.MaxTextBytes)
	}
}
