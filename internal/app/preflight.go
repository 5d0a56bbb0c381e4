package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// missing is what the manager lacks to start, said in one line.
type missing struct{ what string }

func (m missing) Error() string { return m.what }

// preflight says, in one line, what the manager is missing before it
// starts: the CRD, the permissions needed (those its RBAC grants), or the
// slot namespace.
// Its requests wait out an API server outage, as every request does.
func preflight(ctx context.Context, cfg *rest.Config, slotNamespace string, needed []authorizationv1.ResourceAttributes, crds []string) error {
	// Discovery gives up after 32 s unless told otherwise; a manager that
	// starts during an API server outage must wait it out instead of dying.
	waiting := rest.CopyConfig(cfg)
	waiting.Timeout = time.Hour
	dc, err := discovery.NewDiscoveryClientForConfig(waiting)
	if err != nil {
		return err
	}
	if err := crdsServed(ctx, dc, crds); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return err
	}
	var lacking []string
	for _, attrs := range needed {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}
		if err := c.Create(ctx, review); err != nil {
			return fmt.Errorf("checking the manager's permissions: %w", err)
		}
		if !review.Status.Allowed {
			lacking = append(lacking, permission(attrs))
		}
	}
	if len(lacking) > 0 {
		return missing{fmt.Sprintf("the manager's identity lacks %s: apply config/rbac (make deploy) or dist/install.yaml, which grant them", strings.Join(lacking, ", "))}
	}
	if err := c.Get(ctx, types.NamespacedName{Name: slotNamespace}, &corev1.Namespace{}); apierrors.IsNotFound(err) {
		return missing{fmt.Sprintf("the slot namespace %s does not exist: create it (make install does), or set --slot-namespace", slotNamespace)}
	} else if err != nil {
		return fmt.Errorf("reading the slot namespace %s: %w", slotNamespace, err)
	}
	return nil
}

func permission(a authorizationv1.ResourceAttributes) string {
	resource := a.Resource
	if a.Group != "" {
		resource += "." + a.Group
	}
	if a.Namespace != "" {
		return fmt.Sprintf("%s %s in %s", a.Verb, resource, a.Namespace)
	}
	return a.Verb + " " + resource
}

// crdGrace is how long keymint's CRDs have to be served: the API server
// serves a CRD a moment after it is created (Established), and a manager
// started right after `make install` must not call it missing.
const crdGrace = 10 * time.Second

// crdsServed says which of keymint's CRDs (the APIKey's and crds) the API
// server does not serve, once crdGrace has passed without it.
func crdsServed(ctx context.Context, dc discovery.DiscoveryInterface, crds []string) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, crdGrace, true, func(context.Context) (bool, error) {
		last = crdsServedNow(dc, crds)
		if _, ok := errors.AsType[missing](last); ok {
			return false, nil
		}
		return last == nil, last
	})
	if last != nil {
		return last
	}
	return err
}

func crdsServedNow(dc discovery.DiscoveryInterface, crds []string) error {
	served, err := dc.ServerResourcesForGroupVersion(keymintv1alpha1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return missing{"the APIKey CRD (apikeys.keymint.io) is not installed: run `make install`, or apply dist/install.yaml"}
	} else if err != nil {
		return fmt.Errorf("asking the API server for the APIKey CRD: %w", err)
	}
	for _, crd := range crds {
		if !slices.ContainsFunc(served.APIResources, func(r metav1.APIResource) bool { return r.Name == crd }) {
			return missing{fmt.Sprintf("the CRD %s.%s is not installed: run `make install`, or apply dist/install.yaml", crd, keymintv1alpha1.GroupVersion.Group)}
		}
	}
	return nil
}
