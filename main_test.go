package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/keymint/keymint/internal/testenv"
)

// kustomize builds a kustomization with the kubectl that `make test` built.
func kustomize(t *testing.T, dir string) []unstructured.Unstructured {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	out, err := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	var objs []unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		objs = append(objs, u)
	}
}

func find(t *testing.T, objs []unstructured.Unstructured, kind, name string) unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return unstructured.Unstructured{}
}

// managerFlags are the flags bin/manager defines, from its --help.
func managerFlags(t *testing.T) []string {
	t.Helper()
	help, _ := exec.Command(os.Args[0], "-test.run=^TestHelperManagerHelp$").CombinedOutput()
	var flags []string
	for line := range strings.SplitSeq(string(help), "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "-"); ok {
			flags = append(flags, strings.Fields(f)[0])
		}
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in the manager's help:\n%s", help)
	}
	return flags
}

// TestHelperManagerHelp prints the manager's flags when run by
// managerFlags; otherwise it does nothing.
func TestHelperManagerHelp(t *testing.T) {
	if !strings.Contains(strings.Join(os.Args, " "), "-test.run=^TestHelperManagerHelp$") {
		t.Skip("run by managerFlags")
	}
	os.Args = []string{"manager", "--help"}
	main()
}

// TestDeployManifestsBuild: config/default and config/audit-webhook build,
// and every flag their Deployments pass is one the manager defines.
func TestDeployManifestsBuild(t *testing.T) {
	testenv.RequireControlPlane(t)
	flags := managerFlags(t)
	for _, dir := range []string{"config/default", "config/audit-webhook"} {
		objs := kustomize(t, dir)
		u := find(t, objs, "Deployment", "keymint-manager")
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			t.Fatal(err)
		}
		for _, arg := range d.Spec.Template.Spec.Containers[0].Args {
			name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
			if !slices.Contains(flags, name) {
				t.Errorf("%s: the manager has no flag --%s", dir, name)
			}
		}
		// Gateways reach the verifier of every replica.
		find(t, objs, "Service", "keymint-verify")
		if dir == "config/audit-webhook" {
			if *d.Spec.Replicas != 1 {
				t.Errorf("%s: %d replicas; one manager keeps the audit log", dir, *d.Spec.Replicas)
			}
			find(t, objs, "Service", "keymint-audit")
			find(t, objs, "PersistentVolumeClaim", "keymint-audit-log")
		}
	}
}
