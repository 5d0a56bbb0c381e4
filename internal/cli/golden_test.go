package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var goldenNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./internal/cli -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func sampleKeys() []keymintv1alpha1.APIKey {
	mk := func(ns, name, user string, created time.Time, exp keymintv1alpha1.Expiration, st keymintv1alpha1.APIKeyStatus) keymintv1alpha1.APIKey {
		return keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
			Spec:       keymintv1alpha1.APIKeySpec{User: user, Expiration: exp},
			Status:     st,
		}
	}
	at := func(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }
	keys := []keymintv1alpha1.APIKey{
		mk("team-a", "ci", "alice", goldenNow.Add(-40*24*time.Hour), keymintv1alpha1.Expiration{Months: ptr.To[int32](5)},
			keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyID: "kid_0fSwgOivseDGV", ExpiresAt: at(time.Date(2027, 3, 18, 12, 0, 0, 0, time.UTC)),
				LastUsedAt: at(goldenNow.Add(-3 * time.Hour)), RenewalTime: at(time.Date(2027, 2, 18, 12, 0, 0, 0, time.UTC))}),
		mk("team-a", "ci-next", "alice", goldenNow.Add(-2*time.Hour), keymintv1alpha1.Expiration{Never: new(true)},
			keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseActive, KeyID: "kid_1QuMFy5iG2vWg"}),
		mk("team-a", "extra", "alice", goldenNow.Add(-time.Minute), keymintv1alpha1.Expiration{Months: ptr.To[int32](12)},
			keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhasePending}),
		mk("team-b", "old", "bob", goldenNow.Add(-400*24*time.Hour), keymintv1alpha1.Expiration{Months: ptr.To[int32](1)},
			keymintv1alpha1.APIKeyStatus{Phase: keymintv1alpha1.PhaseExpired, KeyID: "kid_1PuYQtDMacTbs", ExpiresAt: at(goldenNow.Add(-50 * time.Hour))}),
	}
	// What the controller reports: Ready and its reason, and the Secret.
	for i, ready := range []struct {
		status metav1.ConditionStatus
		reason string
	}{{metav1.ConditionTrue, "Active"}, {metav1.ConditionTrue, "Active"}, {metav1.ConditionFalse, "KeyLimitReached"}, {metav1.ConditionFalse, "Expired"}} {
		keys[i].Status.Conditions = []metav1.Condition{{Type: keymintv1alpha1.ConditionReady, Status: ready.status, Reason: ready.reason}}
		if keys[i].Status.KeyID != "" {
			keys[i].Status.SecretName = keys[i].Name
		}
	}
	return keys
}

func TestListTableGolden(t *testing.T) {
	for _, tc := range []struct {
		all, wide bool
		golden    string
	}{{false, false, "list.golden"}, {true, false, "list-all-namespaces.golden"}, {false, true, "list-wide.golden"}} {
		out := &bytes.Buffer{}
		l := &listOptions{Options: &Options{Clock: clocktesting.NewFakePassiveClock(goldenNow)}, allNamespaces: tc.all}
		if err := l.table(out, sampleKeys(), tc.wide); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.golden, out.String())
	}
}

func TestRelative(t *testing.T) {
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{goldenNow.AddDate(0, 3, 0), "in 3 months"},
		{goldenNow.AddDate(0, 1, 0), "in 1 month"},
		{goldenNow.AddDate(0, 0, 29), "in 29 days"},
		{goldenNow.AddDate(3, 0, 0), "in 3 years"},
		{goldenNow.Add(90 * time.Minute), "in 1 hour"},
		{goldenNow.Add(-48 * time.Hour), "expired 2 days ago"},
		{goldenNow.Add(-30 * time.Second), "expired less than a minute ago"},
		// A 6-month key issued ten minutes ago: people round to 6 months.
		{goldenNow.AddDate(0, 6, 0).Add(-10 * time.Minute), "in 6 months"},
		{goldenNow.AddDate(0, 5, 10), "in 5 months"},
		{goldenNow.AddDate(0, 5, 20), "in 6 months"},
	} {
		if got := relative(goldenNow, tt.t); got != tt.want {
			t.Errorf("relative(%s) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// TestErrorsGolden pins the one-line messages and exit codes users see.
func TestErrorsGolden(t *testing.T) {
	out := &bytes.Buffer{}
	run := func(args ...string) {
		errOut := &bytes.Buffer{}
		code := Execute(&Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: errOut}}, args)
		out.WriteString("$ kubectl apikey " + joinArgs(args) + "\n" + errOut.String() + "exit " + string(rune('0'+code)) + "\n\n")
	}
	run("create", "ci")
	run("create", "ci", "--months", "3", "--never")
	run("create", "ci", "--expires-at", "next week", "--user", "alice")
	run("create")
	run("create", "ci", "--bogus")
	run("rotate", "ci", "--delete-old", "--wait=false")
	run("rotate", "ci", "--grace", "0s")
	run("create", "ci", "--never", "--renew")
	run("create", "ci", "--months", "3", "--renew-before", "30m")
	run("rotate", "ci", "--in-place", "--successor", "ci-2")
	run("list", "--kubeconfig", "/nonexistent")
	run("create", "ci", "--months", "six")
	run("list", "-o", "wrong")
	run("version", "-o", "xml")
	for _, err := range []error{
		// A CEL rule of the CRD's, which names no field of its own.
		apierrors.NewInvalid(schema.GroupKind{Group: "keymint.io", Kind: "APIKey"}, "a-very-long-name",
			field.ErrorList{field.Invalid(nil, "a-very-long-name", "metadata.name must be at most 63 characters")}),
		apierrors.NewNotFound(schema.GroupResource{Group: "keymint.io", Resource: "apikeys"}, "ci"),
		apierrors.NewForbidden(schema.GroupResource{Group: "keymint.io", Resource: "apikeys"}, "ci",
			errors.New(`User "bob" cannot get resource "apikeys" in API group "keymint.io" in the namespace "team-a"`)),
		// The self-service policy's refusal: bob holds keymint-user already.
		apierrors.NewForbidden(schema.GroupResource{Group: "keymint.io", Resource: "apikeys"}, "ci",
			errors.New(`ValidatingAdmissionPolicy 'keymint-self-service' denied request: spec.user is alice, not you (bob): acting on another user's APIKey needs the delegate verb on apikeys`)),
		apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "nosuch"),
	} {
		out.WriteString("explain: " + explain(err) + "\n")
	}
	golden(t, "errors.golden", out.String())
}

func joinArgs(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	return b.String()
}

func TestDryRunPrintsTheManifest(t *testing.T) {
	out := &bytes.Buffer{}
	code := Execute(&Options{Streams: genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: &bytes.Buffer{}}},
		[]string{"create", "ci", "--months", "12", "--renew-before", "720h", "--user", "alice", "--description", "CI", "-n", "team-a", "--dry-run=client", "-o", "yaml"})
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	golden(t, "create-dry-run.golden", out.String())
}
