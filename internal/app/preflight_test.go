package app

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// establishing serves the APIKey CRD at once and auditentries from its
// third discovery on, as an API server does with CRDs just applied.
type establishing struct {
	discovery.DiscoveryInterface
	calls int
}

func (e *establishing) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	e.calls++
	list := &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{{Name: "apikeys"}}}
	if e.calls >= 3 {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: "auditentries"})
	}
	return list, nil
}

// TestACRDJustAppliedIsWaitedFor: a CRD the API server starts serving a
// moment after the manager first asks is not called missing; one it never
// serves is, once the grace has passed.
func TestACRDJustAppliedIsWaitedFor(t *testing.T) {
	fake := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	e := &establishing{DiscoveryInterface: fake}
	if err := crdsServed(context.Background(), e, []string{"auditentries"}); err != nil {
		t.Fatalf("a CRD served on the third look: %v", err)
	}
	if testing.Short() {
		return
	}
	err := crdsServed(context.Background(), e, []string{"nothings"})
	if _, ok := err.(missing); !ok || !strings.Contains(err.Error(), "nothings."+keymintv1alpha1.GroupVersion.Group+" is not installed") {
		t.Fatalf("a CRD never served: %v", err)
	}
}
