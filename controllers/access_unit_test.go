package controllers

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func TestAccessGroups(t *testing.T) {
	for _, tt := range []struct {
		name      string
		requester *keymintv1alpha1.Requester
		want      []string
	}{
		{"no record", nil, []string{"system:authenticated"}},
		{"created by the user: the recorded groups",
			&keymintv1alpha1.Requester{Username: "alice", Groups: []string{"team-a", "system:authenticated"}},
			[]string{"system:authenticated", "team-a"}},
		{"created by a delegate: not the delegate's groups",
			&keymintv1alpha1.Requester{Username: "admin", Groups: []string{"system:masters"}},
			[]string{"system:authenticated"}},
	} {
		k := newKey("ns", "k", "alice", never())
		k.Spec.Requester = tt.requester
		if got := accessGroups(k); !slices.Equal(got, tt.want) {
			t.Errorf("%s: accessGroups = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSuspendedWaitsForAccessNotForASlot(t *testing.T) {
	k := keyWith(never(), keymintv1alpha1.APIKeyStatus{})
	setActive(k, created, "k", issueOf("kid_x"))
	setSuspended(k, created, "m")
	if k.Status.Phase != keymintv1alpha1.PhaseSuspended || k.Status.ReadyReason() != keymintv1alpha1.ReasonAccessRemoved {
		t.Fatalf("phase %s, reason %s", k.Status.Phase, k.Status.ReadyReason())
	}
	if isWaiting(k) {
		t.Fatal("a suspended key must wait for access, not for a slot")
	}
}

// recordingQueue records what a handler queues.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	now   map[string]int
	later map[string]int
}

func (q *recordingQueue) Add(r reconcile.Request) { q.now[r.String()]++ }
func (q *recordingQueue) AddAfter(r reconcile.Request, _ time.Duration) {
	q.later[r.String()]++
}

// TestRecheckQueuesOnlyTheKeysABindingConcerns: a binding change re-checks
// the keys whose user or recorded group it names, before or after the
// change, in its scope; everyone's groups re-check every key in scope; a
// binding of anybody else re-checks none.
func TestRecheckQueuesOnlyTheKeysABindingConcerns(t *testing.T) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	alice := newKey("a", "alice-key", "alice", never())
	team := newKey("b", "bob-key", "bob", never())
	team.Spec.Requester = &keymintv1alpha1.Requester{Username: "bob", Groups: []string{"team-b", "system:authenticated"}}
	robot := newKey("a", "robot-key", "system:serviceaccount:a:robot", never())
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "use"},
		RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "keymint-user"}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(alice, team, robot, rb).
		WithIndex(&rbacv1.RoleBinding{}, IndexRoleRef, indexRoleRef).
		WithIndex(&rbacv1.ClusterRoleBinding{}, IndexRoleRef, indexRoleRef).Build()
	r := &APIKeyReconciler{Client: c}
	crb := func(subjects ...rbacv1.Subject) client.Object {
		return &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Subjects: subjects}
	}
	user := func(n string) rbacv1.Subject { return rbacv1.Subject{Kind: rbacv1.UserKind, Name: n} }
	group := func(n string) rbacv1.Subject { return rbacv1.Subject{Kind: rbacv1.GroupKind, Name: n} }
	for _, tt := range []struct {
		name     string
		bindings []client.Object
		want     []string
	}{
		{"a user", []client.Object{crb(user("alice"))}, []string{"a/alice-key"}},
		{"somebody else", []client.Object{crb(user("carol"), group("team-c"))}, nil},
		{"a recorded group", []client.Object{crb(group("team-b"))}, []string{"b/bob-key"}},
		{"a service account", []client.Object{crb(rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "robot"})},
			[]string{"a/robot-key"}},
		{"everyone, cluster-wide", []client.Object{crb(group("system:authenticated"))}, []string{"a/alice-key", "a/robot-key", "b/bob-key"}},
		{"everyone, in one namespace", []client.Object{&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "x"},
			Subjects: []rbacv1.Subject{group("system:serviceaccounts")}}}, []string{"b/bob-key"}},
		{"a user bound in another namespace", []client.Object{&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "x"},
			Subjects: []rbacv1.Subject{user("alice")}}}, nil},
		{"before and after an update", []client.Object{crb(user("alice")), crb(user("bob"))}, []string{"a/alice-key", "b/bob-key"}},
		{"keymint's own grant to an owner", []client.Object{&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "a",
			Name: ownerAccessName("alice-key"), OwnerReferences: []metav1.OwnerReference{{APIVersion: keymintv1alpha1.GroupVersion.String(),
				Kind: "APIKey", Name: "alice-key", Controller: new(true)}}}, Subjects: []rbacv1.Subject{user("alice")}}}, nil},
	} {
		q := &recordingQueue{now: map[string]int{}, later: map[string]int{}}
		var settle []func()
		r.after = func(_ time.Duration, f func()) { settle = append(settle, f) }
		r.recheck(context.Background(), q, tt.bindings...)
		got := slices.Sorted(maps.Keys(q.now))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: queued %v, want %v", tt.name, got, tt.want)
		}
		// Each settle delay, on a timer of its own, queues every key again.
		for _, f := range settle {
			f()
		}
		for k, n := range q.now {
			if n != 1+len(bindingSettle) {
				t.Errorf("%s: %s queued %d times, want at once and after each of %d delays", tt.name, k, n, len(bindingSettle))
			}
		}
	}

	// A role edit re-checks the keys of the bindings that bind it.
	q := &recordingQueue{now: map[string]int{}, later: map[string]int{}}
	rb.Subjects = []rbacv1.Subject{user("alice")}
	if err := c.Update(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
	role := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "keymint-user"}}
	r.roleEvents().Update(context.Background(), event.UpdateEvent{ObjectOld: role, ObjectNew: role}, q)
	if got := slices.Sorted(maps.Keys(q.now)); !slices.Equal(got, []string{"a/alice-key"}) {
		t.Errorf("a ClusterRole edit queued %v, want a/alice-key", got)
	}
}
