package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/slots"
	"github.com/keymint/keymint/internal/testenv"
)

// config is what one run does.
type config struct {
	kills       int
	users       int
	twoManagers time.Duration
	outages     durations
}

// keepDir, when set, is where the run keeps its files (logs, audit log).
var keepDir string

// settleAfterOutage is how soon after the API server's return every key
// must have converged.
const settleAfterOutage = 15 * time.Second

const namespace = "chaos"

type harness struct {
	env        *testenv.Env
	root, dir  string
	kubeconfig string
	mon        *monitor
	audit      *auditPoster
	out        io.Writer

	mu       sync.Mutex
	managers []*exec.Cmd
	// verifiers are the verify addresses of the running managers; frozen
	// says until when one was paused (SIGSTOP) into a stale cache.
	verifiers []string
	frozen    map[string]time.Time
	// rotations, probed and probes count the in-place rotations, the
	// retired keys presented to the verifiers, and the presentations.
	rotations, probed, probes atomic.Int64
	keyNames                  []string
	next                      int
}

func run(ctx context.Context, c config, out io.Writer) (int, error) {
	// The monitor's watches retry through the outages; their errors are
	// expected, and would bury the report.
	klog.SetLogger(logr.Discard())
	root, err := repoRoot()
	if err != nil {
		return 0, err
	}
	dir := keepDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "keymint-chaos-"); err != nil {
			return 0, err
		}
		defer func() { _ = os.RemoveAll(dir) }()
	}
	h := &harness{root: root, dir: dir, out: out}
	h.say("building bin/manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "manager"), ".")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 0, fmt.Errorf("building the manager: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	h.say("starting kube-apiserver and etcd")
	if h.env, err = testenv.Start(ctx, filepath.Join(root, "config"), scheme, testenv.WithAuditWebhook(dir)); err != nil {
		return 0, err
	}
	apiserver, err := findAPIServer(h.env)
	if err != nil {
		return 0, err
	}
	defer func() {
		h.stopManagers()
		apiserver.kill()
		_ = h.env.Stop()
	}()
	if err := h.setUp(ctx); err != nil {
		return 0, err
	}
	if h.mon, err = newMonitor(ctx, h.env.Client, namespace); err != nil {
		return 0, err
	}
	// The audit batches read the anchor's Secret, which churn never deletes.
	anchor, err := h.createKey(ctx, "anchor", "anchor-user")
	if err != nil {
		return 0, err
	}
	h.keyNames = nil
	if err := h.startManager(); err != nil {
		return 0, err
	}
	if err := h.waitConverged(ctx, time.Minute); err != nil {
		return 0, err
	}
	h.audit = newAuditPoster(h.env.Audit, namespace, anchor)

	// Churn, audit batches and kills.
	churnCtx, stopChurn := context.WithCancel(ctx)
	defer stopChurn()
	var churn sync.WaitGroup
	churn.Go(func() { h.churn(churnCtx, c.users) })
	churn.Go(func() { h.audit.run(churnCtx) })
	h.say("churn: %d SIGKILLs of the manager", c.kills)
	for range c.kills {
		pause(ctx, 300*time.Millisecond+rand.N(1200*time.Millisecond))
		h.killManagers()
		if err := h.startManager(); err != nil {
			return 0, err
		}
	}
	h.say("two managers without leader election for %s, one paused into a stale cache", c.twoManagers)
	if err := h.startManager(); err != nil {
		return 0, err
	}
	pause(ctx, c.twoManagers/3)
	second := h.lastManager()
	h.freeze(ctx, second, c.twoManagers/3)
	pause(ctx, c.twoManagers/3)
	h.killManagers()
	if err := h.startManager(); err != nil {
		return 0, err
	}
	stopChurn()
	churn.Wait()
	if err := h.waitConverged(ctx, time.Minute); err != nil {
		return 0, err
	}

	// API server outages, with keys waiting to be issued.
	var settled []string
	for _, d := range c.outages {
		h.say("API server outage of %s", d)
		for range 5 {
			_, _ = h.createKey(ctx, "", fmt.Sprintf("u%d", rand.N(c.users)))
		}
		apiserver.kill()
		pause(ctx, d)
		if err := apiserver.start(filepath.Join(dir, "kube-apiserver.log")); err != nil {
			return 0, err
		}
		back := time.Now()
		if err := h.waitReachable(ctx); err != nil {
			return 0, err
		}
		for range 5 {
			_, _ = h.createKey(ctx, "", fmt.Sprintf("u%d", rand.N(c.users)))
		}
		if err := h.waitConverged(ctx, 2*time.Minute); err != nil {
			return 0, err
		}
		took := time.Since(back)
		settled = append(settled, fmt.Sprintf("%s: settled %.1fs after the return", d, took.Seconds()))
		if took > settleAfterOutage {
			h.mon.violate(invSettled, fmt.Sprintf("after an outage of %s, keys settled %.1fs after the API server's return", d, took.Seconds()))
		}
	}

	h.stopManagers()
	if err := h.mon.checkFinal(ctx, h.env.Client, h.audit, filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit-2.log")); err != nil {
		return 0, err
	}
	h.say("%d SIGKILLs, %d APIKeys created, %d keys issued, %d rotated in place (%d retired keys presented to the verifiers %d times), %d audit batches acknowledged (%d sent twice), outages: %s",
		c.kills, h.next, h.mon.issuedCount(), h.rotations.Load(), h.probed.Load(), h.probes.Load(), h.audit.acknowledgedCount(), h.audit.twice, strings.Join(settled, "; "))
	return h.mon.report(out), nil
}

func (h *harness) say(format string, args ...any) {
	fmt.Fprintf(h.out, "chaos: "+format+"\n", args...)
}

// setUp grants every user keys in the namespace and gives the manager an
// identity of its own.
func (h *harness) setUp(ctx context.Context) error {
	c := h.env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "everyone-holds-keys"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}},
	}); err != nil {
		return err
	}
	h.kubeconfig = filepath.Join(h.dir, "manager.kubeconfig")
	return testenv.WriteKubeconfig(h.env.Environment, h.kubeconfig, "keymint-manager", "system:masters")
}

// startManager starts one more manager process, without leader election.
func (h *harness) startManager() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.env.Audit
	log, err := os.OpenFile(filepath.Join(h.dir, "manager.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	verifier := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(filepath.Join(h.dir, "manager"), "--slot-namespace="+testenv.SlotNamespace,
		"--health-probe-bind-address=0", "--metrics-bind-address=0", "--verify-bind-address="+verifier, "--ext-authz-bind-address=0")
	// Only one manager can serve the audit port: a second one keeps its
	// records in a file of its own and serves no webhook.
	if len(h.managers) > 0 {
		cmd.Args = append(cmd.Args, "--audit-log-path="+filepath.Join(h.dir, "audit-2.log"))
	} else {
		cmd.Args = append(cmd.Args, "--audit-log-path="+filepath.Join(h.dir, "audit.log"), "--audit-bind-address="+w.Addr,
			"--audit-tls-cert-file="+w.CertFile, "--audit-tls-key-file="+w.KeyFile, "--audit-webhook-token-file="+w.TokenFile)
	}
	cmd.Env = append(os.Environ(), "KUBECONFIG="+h.kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	h.managers = append(h.managers, cmd)
	h.verifiers = append(h.verifiers, verifier)
	return nil
}

// freeze pauses manager m (SIGSTOP) for d. Its verifier then answers from
// a cache as old as the pause until it catches up: the probe of expired
// keys leaves it out for the pause and a second after.
func (h *harness) freeze(ctx context.Context, m *exec.Cmd, d time.Duration) {
	h.mu.Lock()
	addr := h.verifiers[len(h.verifiers)-1]
	if h.frozen == nil {
		h.frozen = map[string]time.Time{}
	}
	h.frozen[addr] = time.Now().Add(d + time.Second)
	h.mu.Unlock()
	_ = m.Process.Signal(syscall.SIGSTOP)
	pause(ctx, d)
	_ = m.Process.Signal(syscall.SIGCONT)
}

func (h *harness) lastManager() *exec.Cmd {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.managers[len(h.managers)-1]
}

// killManagers SIGKILLs every manager, as a node failure or the OOM killer
// would.
func (h *harness) killManagers() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.managers {
		_ = m.Process.Signal(syscall.SIGCONT)
		_ = m.Process.Kill()
		_ = m.Wait()
	}
	h.managers, h.verifiers = nil, nil
}

func (h *harness) stopManagers() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.managers {
		_ = m.Process.Signal(syscall.SIGTERM)
		_ = m.Wait()
	}
	h.managers, h.verifiers = nil, nil
}

// createKey creates an APIKey for user, named name or the next free name.
func (h *harness) createKey(ctx context.Context, name, user string) (*keymintv1alpha1.APIKey, error) {
	h.mu.Lock()
	if name == "" {
		name = fmt.Sprintf("k%05d", h.next)
	}
	h.next++
	h.mu.Unlock()
	exp := keymintv1alpha1.Expiration{Never: new(true)}
	var rotation *keymintv1alpha1.Rotation
	if rand.N(2) == 0 {
		// Half of the months keys rotate: churn renews them in place.
		exp = keymintv1alpha1.Expiration{Months: ptr.To[int32](12)}
		if rand.N(2) == 0 {
			rotation = &keymintv1alpha1.Rotation{}
		}
	}
	key := &keymintv1alpha1.APIKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       keymintv1alpha1.APIKeySpec{User: user, Expiration: exp, Rotation: rotation},
	}
	if err := h.env.Client.Create(ctx, key); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.keyNames = append(h.keyNames, name)
	h.mu.Unlock()
	return key, nil
}

// churn creates, rotates in place and deletes keys of users until ctx
// ends. An in-place rotation keeps the previous key for a grace of 2s
// (a second slot) or none; only keys with spec.rotation are rotated, whose
// Secret is updated in place (any other's is replaced, which the
// invariant of no early revocation would count).
func (h *harness) churn(ctx context.Context, users int) {
	for ctx.Err() == nil {
		pause(ctx, 30*time.Millisecond)
		if rand.N(10) == 0 {
			h.rotateOne(ctx)
			continue
		}
		if rand.N(5) < 3 {
			_, _ = h.createKey(ctx, "", fmt.Sprintf("u%d", rand.N(users)))
			continue
		}
		h.mu.Lock()
		if len(h.keyNames) == 0 {
			h.mu.Unlock()
			continue
		}
		i := rand.N(len(h.keyNames))
		name := h.keyNames[i]
		h.keyNames = append(h.keyNames[:i], h.keyNames[i+1:]...)
		h.mu.Unlock()
		_ = h.env.Client.Delete(ctx, &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}})
	}
}

// rotateOne asks for the in-place rotation of a random key with
// spec.rotation.
func (h *harness) rotateOne(ctx context.Context) {
	list := &keymintv1alpha1.APIKeyList{}
	if h.env.Client.List(ctx, list, client.InNamespace(namespace)) != nil {
		return
	}
	var rotating []keymintv1alpha1.APIKey
	for _, k := range list.Items {
		if k.Spec.Rotation != nil && k.Status.Phase.Issued() && k.DeletionTimestamp.IsZero() {
			rotating = append(rotating, k)
		}
	}
	if len(rotating) == 0 {
		return
	}
	k := rotating[rand.N(len(rotating))]
	// A grace longer than propagation, so that the previous key's end is
	// the verifier's own clock's, not its cache's catching up.
	grace := []string{"0s", "5s"}[rand.N(2)]
	old := &corev1.Secret{}
	// The probe needs the key the status names: a Secret read in the
	// moment between a renewal's two writes holds one the status does not
	// name yet, which the request does not rotate.
	if h.env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: k.Status.SecretName}, old) != nil ||
		string(old.Data[keymintv1alpha1.DataKeyID]) != k.Status.KeyID {
		return
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q,%q:%q}}}`,
		keymintv1alpha1.AnnotationRotateRequestedAt, time.Now().UTC().Format(time.RFC3339),
		keymintv1alpha1.AnnotationRotateGrace, grace)
	requested := time.Now()
	if h.env.Client.Patch(ctx, &k, client.RawPatch(types.MergePatchType, patch)) == nil {
		h.rotations.Add(1)
		go h.probePastExpiry(ctx, client.ObjectKeyFromObject(&k), string(old.Data[keymintv1alpha1.DataKeyID]), string(old.Data[keymintv1alpha1.DataKey]), requested)
	}
}

// propagation bounds how long a verifier takes to see a status write
// through its watch, on a machine as loaded as the chaos run's: the bound
// of "refused at once" for a key revoked without grace.
const propagation = 2 * time.Second

// probePastExpiry waits until the rotated key's previous key, keyID, is
// due to stop working, then presents it to every running manager's
// verifier: none may accept it.
func (h *harness) probePastExpiry(ctx context.Context, ref client.ObjectKey, keyID, value string, requested time.Time) {
	var until, seen time.Time
	var how string
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		seen = time.Now()
		k := &keymintv1alpha1.APIKey{}
		if err := h.env.Client.Get(ctx, ref, k); err != nil {
			return apierrors.IsNotFound(err), nil
		}
		if p := k.Status.PreviousKey; p != nil && p.KeyID == keyID {
			until, how = p.ExpiresAt.Time, "its grace ended"
			return true, nil
		}
		// Revoked at once (no grace): due now.
		if k.Status.KeyID != keyID && (k.Status.PreviousKey == nil || k.Status.PreviousKey.KeyID != keyID) {
			until, how = time.Now(), "revoked at once"
			return true, nil
		}
		return false, nil
	})
	if until.IsZero() {
		return
	}
	// A revocation reaches a verifier through its watch: it is given
	// propagation from the status's write to learn of it. A previous
	// key's expiry is its own clock's, to within a rounding.
	pause(ctx, max(time.Until(until)+200*time.Millisecond, time.Until(seen.Add(propagation))))
	h.mu.Lock()
	var verifiers []string
	for _, addr := range h.verifiers {
		if h.frozen[addr].Before(requested) { // not frozen since the request
			verifiers = append(verifiers, addr)
		}
	}
	h.mu.Unlock()
	h.probed.Add(1)
	for _, addr := range verifiers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/verify", nil)
		if err != nil {
			continue
		}
		req.Header.Set("X-API-Key", value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // a manager being killed
		}
		_ = resp.Body.Close()
		h.probes.Add(1)
		if resp.StatusCode == http.StatusOK {
			h.mon.violate(invPastExpiry, fmt.Sprintf("key %s accepted by the verifier at %s at %s, after it stopped working at %s (%s), as key %s of %s",
				keyID, addr, time.Now().UTC().Format(time.RFC3339Nano), until.UTC().Format(time.RFC3339Nano), how,
				resp.Header.Get("X-Keymint-Key-Id"), resp.Header.Get("X-Keymint-Expires-At")))
		}
	}
}

// waitReachable waits until the API server serves APIKeys again.
func (h *harness) waitReachable(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return h.env.Client.List(ctx, &keymintv1alpha1.APIKeyList{}, client.InNamespace(namespace)) == nil, nil
	})
}

// waitConverged waits until the API server shows every key settled.
func (h *harness) waitConverged(ctx context.Context, limit time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		var err error
		if last, err = unsettled(ctx, h.env.Client); err != nil {
			last = "reading the keys: " + err.Error()
			return false, nil
		}
		return last == "", nil
	})
	if err != nil {
		return fmt.Errorf("keys did not converge within %s: %s (logs in %s)", limit, last, h.dir)
	}
	return nil
}

// pause waits d or until ctx ends: the harness paces failures on purpose.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// unsettled says what keeps the keys from having converged, "" if nothing:
// every key Active with its Secret, or waiting while its user holds the
// cap; every Secret and slot held by a live APIKey.
func unsettled(ctx context.Context, c client.Client) (string, error) {
	var keys keymintv1alpha1.APIKeyList
	if err := c.List(ctx, &keys, client.InNamespace(namespace)); err != nil {
		return "", err
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(namespace)); err != nil {
		return "", err
	}
	byUID := map[string]*keymintv1alpha1.APIKey{}
	active := map[string]int{}
	for i := range keys.Items {
		k := &keys.Items[i]
		byUID[string(k.UID)] = k
		if k.Status.Phase == keymintv1alpha1.PhaseActive && k.DeletionTimestamp.IsZero() {
			active[k.Spec.User]++
			if k.PreviousValidAt(time.Now()) { // a renewed key's previous key holds a slot too
				active[k.Spec.User]++
			}
		}
	}
	secretOf := map[string]string{}
	for _, s := range secrets.Items {
		owner := metav1.GetControllerOf(&s)
		if owner == nil {
			continue
		}
		if k, ok := byUID[string(owner.UID)]; !ok || !k.DeletionTimestamp.IsZero() {
			return fmt.Sprintf("Secret %s has no live APIKey", s.Name), nil
		}
		secretOf[string(owner.UID)] = string(s.Data["key-id"])
	}
	for _, k := range keys.Items {
		switch {
		case !k.DeletionTimestamp.IsZero():
			return fmt.Sprintf("APIKey %s is still being deleted", k.Name), nil
		case k.Status.ObservedGeneration != k.Generation:
			return fmt.Sprintf("APIKey %s was not reconciled", k.Name), nil
		case k.Status.Phase == keymintv1alpha1.PhaseActive && secretOf[string(k.UID)] != k.Status.KeyID:
			return fmt.Sprintf("APIKey %s is Active without its Secret", k.Name), nil
		case k.Status.Phase == keymintv1alpha1.PhasePending && active[k.Spec.User] < 2:
			return fmt.Sprintf("APIKey %s waits while its user holds %d keys", k.Name, active[k.Spec.User]), nil
		case k.Status.Phase != keymintv1alpha1.PhaseActive && k.Status.Phase != keymintv1alpha1.PhasePending:
			return fmt.Sprintf("APIKey %s is %s", k.Name, k.Status.Phase), nil
		}
	}
	var leases coordinationv1.LeaseList
	if err := c.List(ctx, &leases, client.InNamespace(testenv.SlotNamespace)); err != nil {
		return "", err
	}
	for _, l := range leases.Items {
		if l.Labels[slots.LabelHolderName] == "" {
			continue
		}
		if k, ok := byUID[ptr.Deref(l.Spec.HolderIdentity, "")]; !ok || k.Status.Phase != keymintv1alpha1.PhaseActive {
			return fmt.Sprintf("slot %s is held by no Active APIKey", l.Name), nil
		}
	}
	return "", nil
}
