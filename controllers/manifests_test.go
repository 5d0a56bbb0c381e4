package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// applyManifests creates every object in the YAML files of dir, except its
// kustomization.
func applyManifests(ctx context.Context, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := decoder.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := k8sClient.Create(ctx, obj); err != nil {
				return fmt.Errorf("%s: %s %s: %w", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// waitForPolicies waits until the API server applies the admission
// policies: an APIKey created as the suite's admin comes back with
// spec.requester set.
func waitForPolicies(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		probe := newKey(slotNamespace, fmt.Sprintf("policy-probe-%d", i), "probe", never())
		if err := k8sClient.Create(ctx, probe); err != nil {
			return err
		}
		ok := probe.Spec.Requester != nil
		if err := k8sClient.Delete(ctx, probe); err != nil {
			return err
		}
		if ok {
			return nil
		}
		// Polled with a deadline: the policies load asynchronously.
		<-time.After(200 * time.Millisecond)
	}
	return errors.New("the admission policies did not take effect")
}
