package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/controllers"
	"github.com/keymint/keymint/internal/apicerts"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/auditstore"
)

// TestConfigRepeatsTheContract: the YAML in config/ that repeats a
// contract string of api/v1alpha1 repeats it exactly, so a rename in Go
// cannot leave the admission policy or the user role behind.
func TestConfigRepeatsTheContract(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"config/admission/requester.yaml", `"` + keymintv1alpha1.Finalizer + `"`},
		{"config/access/roles.yaml", `"` + keymintv1alpha1.VerbUse + `"]`},
	} {
		raw, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), c.want) {
			t.Errorf("%s does not contain %s", c.file, c.want)
		}
	}
}

// TestStartUpCheckAsksForTheGeneratedRole: the permissions the manager
// checks at start are exactly those config/rbac/role.yaml grants, which
// controller-gen generates from the RBAC markers: a marker added without
// its check, or a check for what the role does not grant, fails here.
func TestStartUpCheckAsksForTheGeneratedRole(t *testing.T) {
	const ns = "keymint-system"
	key := func(a authorizationv1.ResourceAttributes) string {
		return a.Verb + " " + a.Resource + "." + a.Group + " in " + a.Namespace
	}
	checked := map[string]bool{}
	needed := append(controllers.RequiredPermissions(ns), auditserver.RequiredPermissions()...)
	needed = append(needed, apicerts.CertPermissions()...)
	for _, a := range append(needed, auditstore.RequiredPermissions(ns)...) {
		checked[key(a)] = true
	}
	raw, err := os.ReadFile("config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	granted := map[string]bool{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var role rbacv1.Role // a ClusterRole's rules decode alike
		if err := dec.Decode(&role); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						granted[key(authorizationv1.ResourceAttributes{Group: g, Resource: res, Verb: v, Namespace: role.Namespace})] = true
					}
				}
			}
		}
	}
	for k := range granted {
		if !checked[k] {
			t.Errorf("the role grants %s, which the start-up check does not ask for", k)
		}
	}
	for k := range checked {
		if !granted[k] {
			t.Errorf("the start-up check asks for %s, which the role does not grant", k)
		}
	}
}
