package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

func runtimeNumCPU() int { return runtime.NumCPU() }

type bench struct {
	env     *testenv.Env
	root    string
	workers int

	manager     *exec.Cmd
	metricsAddr string
	pprofAddr   string
	// verifyAddr and extAuthzAddr are the manager's verifier, HTTP and gRPC.
	verifyAddr, extAuthzAddr string
	// args are more flags for the manager, after managerArgs.
	args []string
}

// startManager runs bin/manager against the control plane, as its own
// process.
func (b *bench) startManager(ctx context.Context) error {
	dir := filepath.Join(b.root, "bin")
	path := filepath.Join(dir, "bench-kubeconfig")
	if err := testenv.WriteKubeconfig(b.env.Environment, path, "keymint-manager", "system:masters"); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.metricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if port, err = freePort(); err != nil {
		return err
	}
	b.pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if port, err = freePort(); err != nil {
		return err
	}
	b.verifyAddr = fmt.Sprintf("127.0.0.1:%d", port)
	if port, err = freePort(); err != nil {
		return err
	}
	b.extAuthzAddr = fmt.Sprintf("127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(dir, "bench-manager.log"))
	if err != nil {
		return err
	}
	args := append([]string{"--slot-namespace=" + testenv.SlotNamespace, "--health-probe-bind-address=0",
		"--metrics-bind-address=" + b.metricsAddr, "--metrics-secure=false", "--pprof-bind-address=" + b.pprofAddr,
		"--verify-bind-address=" + b.verifyAddr, "--ext-authz-bind-address=" + b.extAuthzAddr}, append(slices.Clone(managerArgs), b.args...)...)
	b.manager = exec.Command(filepath.Join(dir, "manager"), args...)
	b.manager.Env = append(os.Environ(), "KUBECONFIG="+path)
	b.manager.Stdout, b.manager.Stderr = log, log
	if err := b.manager.Start(); err != nil {
		return fmt.Errorf("starting bin/manager (make build): %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, err := b.scrape()
		return err == nil, nil
	})
}

func (b *bench) stop() {
	if b.manager != nil && b.manager.Process != nil {
		_ = b.manager.Process.Signal(os.Interrupt)
		_ = b.manager.Wait()
		b.manager = nil
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// metrics is what the manager's /metrics says.
type metrics struct {
	requests   map[string]float64 // client requests by HTTP method
	heap       float64            // heap allocated, garbage included
	liveHeap   float64            // heap live at the last garbage collection
	reconciles float64            // reconciles finished, whatever their result
	reviews    float64            // SubjectAccessReviews sent
}

var methodLabel = regexp.MustCompile(`method="([A-Z]+)"`)

// heapProfile, when set, is where the scale scenario saves the manager's
// heap profile.
var heapProfile string

// apiserverProfile, when set, is where the throughput scenario saves a CPU
// profile of kube-apiserver taken while the keys are issued.
var apiserverProfile string

// profileAPIServer starts a CPU profile of kube-apiserver lasting d and
// returns a function that waits for it and writes it to path.
func (b *bench) profileAPIServer(d time.Duration, path string) func() error {
	done := make(chan error, 1)
	go func() {
		httpClient, err := rest.HTTPClientFor(b.env.Config)
		if err != nil {
			done <- err
			return
		}
		resp, err := httpClient.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(b.env.Config.Host, "/"), int(d.Seconds())))
		if err != nil {
			done <- err
			return
		}
		defer func() { _ = resp.Body.Close() }()
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		defer func() { _ = f.Close() }()
		_, err = io.Copy(f, resp.Body)
		done <- err
	}()
	return func() error { return <-done }
}

// collectGarbage makes the manager run a garbage collection (a heap
// profile with gc=1 does), so the live heap it reports next is current.
// The profile goes to path, or nowhere when path is empty.
func (b *bench) collectGarbage(path string) error {
	resp, err := http.Get("http://" + b.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var w = io.Discard
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		w = f
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func (b *bench) scrape() (metrics, error) {
	resp, err := http.Get("http://" + b.metricsAddr + "/metrics")
	if err != nil {
		return metrics{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	m := metrics{requests: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
		switch {
		case strings.HasPrefix(line, "rest_client_requests_total{"):
			if mm := methodLabel.FindStringSubmatch(line); mm != nil {
				m.requests[mm[1]] += v
			}
		case strings.HasPrefix(line, "go_memstats_heap_alloc_bytes "):
			m.heap = v
		case strings.HasPrefix(line, "keymint_access_reviews_total "):
			m.reviews = v
		case strings.HasPrefix(line, "controller_runtime_reconcile_total{"):
			m.reconciles += v
		case strings.HasPrefix(line, "keymint_go_heap_live_bytes "):
			m.liveHeap = v
		}
	}
	return m, sc.Err()
}

// peakRSSMiB is the manager's VmHWM.
func (b *bench) peakRSSMiB() float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.manager.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// parallel runs do(i) for i in [0, n) on b.workers goroutines.
func (b *bench) parallel(n int, do func(i int) error) error {
	return parallel(b.workers, n, do)
}

// parallel runs do(i) for i in [0, n) on workers goroutines.
func parallel(workers, n int, do func(i int) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}

// namespace creates a namespace in which every authenticated user holds
// keys, by a RoleBinding: the access scenario keeps a namespace where
// nobody does.
func (b *bench) namespace(ctx context.Context, name string) error {
	if err := b.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return err
	}
	return b.env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "bench-everyone-holds-keys"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "keymint-user"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}},
	})
}

// floor is a bare client doing, per item, one Secret create and one patch.
func (b *bench) floor(ctx context.Context, n int) (time.Duration, error) {
	if err := b.namespace(ctx, "floor"); err != nil {
		return 0, err
	}
	start := time.Now()
	err := b.parallel(n, func(i int) error {
		s := floorSecret("floor", i)
		if err := b.env.Client.Create(ctx, s); err != nil {
			return err
		}
		return b.env.Client.Patch(ctx, s, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"done":"true"}}}`)))
	})
	return time.Since(start), err
}

// jobFloor is a bare client doing keymint's job with none of its checks,
// per key: the APIKey create (admission policies included), the Secret
// create and the status patch, with the same workers. No manager runs; the
// APIKeys are gone again before one starts.
func (b *bench) jobFloor(ctx context.Context, n int) (time.Duration, error) {
	const ns = "job-floor"
	if err := b.namespace(ctx, ns); err != nil {
		return 0, err
	}
	start := time.Now()
	err := b.parallel(n, func(i int) error {
		k := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k-%d", i)},
			Spec: keymintv1alpha1.APIKeySpec{User: fmt.Sprintf("user-%d", i), Expiration: never}}
		if err := b.env.Client.Create(ctx, k); err != nil {
			return err
		}
		if err := b.env.Client.Create(ctx, floorSecret(ns, i)); err != nil {
			return err
		}
		status := []byte(`{"status":{"phase":"Active","keyID":"kid_floor"}}`)
		return b.env.Client.Status().Patch(ctx, k, client.RawPatch(types.MergePatchType, status))
	})
	took := time.Since(start)
	if err != nil {
		return took, err
	}
	return took, b.removeKeys(ctx, ns, n)
}

// removeKeys deletes the keys k-0 to k-(n-1) of ns that no manager
// reconciled, finalizer first.
func (b *bench) removeKeys(ctx context.Context, ns string, n int) error {
	noFinalizer := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	return b.parallel(n, func(i int) error {
		k := &keymintv1alpha1.APIKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k-%d", i)}}
		if err := b.env.Client.Patch(ctx, k, noFinalizer); err != nil {
			return err
		}
		return b.env.Client.Delete(ctx, k)
	})
}

// floorSecret is the i-th Secret a floor writes in ns: a key's size of data.
func floorSecret(ns string, i int) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s-%d", i)},
		Data:       map[string][]byte{"api-key": bytes.Repeat([]byte("k"), 53)},
	}
}

// deleteWorkers is the manager's default --max-concurrent-reconciles: the
// deletion floor deletes with as many clients as keymint has reconcilers.
const deleteWorkers = 32

// deleteFloor is the expiry scenario's floor: n Secrets deleted at once by
// a bare client with deleteWorkers workers, on the same API server. It
// returns p50 and p99 of (deletion seen by a watch − start), measured as
// the expiry scenario measures keymint.
func (b *bench) deleteFloor(ctx context.Context, n int) (p50, p99 float64, err error) {
	const ns = "floor-delete"
	if err := b.namespace(ctx, ns); err != nil {
		return 0, 0, err
	}
	if err := b.parallel(n, func(i int) error { return b.env.Client.Create(ctx, floorSecret(ns, i)) }); err != nil {
		return 0, 0, err
	}
	dw, err := b.watchDeletions(ctx, ns)
	if err != nil {
		return 0, 0, err
	}
	defer dw.Stop()
	start := time.Now()
	if err := parallel(deleteWorkers, n, func(i int) error { return b.env.Client.Delete(ctx, floorSecret(ns, i)) }); err != nil {
		return 0, 0, err
	}
	gone, err := dw.waitFor(ctx, n, time.Minute)
	if err != nil {
		return 0, 0, err
	}
	p50, p99 = lagsAfter(start, gone)
	return p50, p99, nil
}

// deletionWatch records when each Secret of a namespace was seen deleted
// (or, from watchSecrets, first seen as asked).
type deletionWatch struct {
	mu   sync.Mutex
	gone map[string]time.Time
	stop context.CancelFunc
}

// Stop ends the watch.
func (dw *deletionWatch) Stop() { dw.stop() }

// watchDeletions notes when each Secret in ns is seen deleted.
func (b *bench) watchDeletions(ctx context.Context, ns string) (*deletionWatch, error) {
	return b.watchSecrets(ctx, ns, func(ev watch.Event, _ *corev1.Secret) bool { return ev.Type == watch.Deleted })
}

// watchSecrets notes when each Secret in ns is first seen in an event that
// matches. When the API server ends the watch (under load it drops
// watchers it finds slow), it watches again from the last event it saw, so
// that no event is missed.
func (b *bench) watchSecrets(ctx context.Context, ns string, match func(watch.Event, *corev1.Secret) bool) (*deletionWatch, error) {
	list := &corev1.SecretList{}
	if err := b.env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	dw := &deletionWatch{gone: map[string]time.Time{}, stop: cancel}
	rv := list.ResourceVersion
	go func() {
		_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			w, err := b.env.Client.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
			if err != nil {
				return false, nil
			}
			defer w.Stop()
			for ev := range w.ResultChan() {
				s, ok := ev.Object.(*corev1.Secret)
				if !ok {
					continue // an error event: the watch ends and starts again
				}
				rv = s.ResourceVersion
				if match(ev, s) {
					dw.mu.Lock()
					if _, seen := dw.gone[s.Name]; !seen {
						dw.gone[s.Name] = time.Now()
					}
					dw.mu.Unlock()
				}
			}
			return false, nil
		})
	}()
	return dw, nil
}

// waitFor waits until n Secrets were seen deleted and returns when each was.
func (dw *deletionWatch) waitFor(ctx context.Context, n int, timeout time.Duration) (map[string]time.Time, error) {
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		dw.mu.Lock()
		defer dw.mu.Unlock()
		return len(dw.gone) >= n, nil
	})
	dw.mu.Lock()
	defer dw.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%d of %d Secrets deleted: %w", len(dw.gone), n, err)
	}
	return maps.Clone(dw.gone), nil
}

// lagsAfter is p50 and p99 of the times in gone after t.
func lagsAfter(t time.Time, gone map[string]time.Time) (p50, p99 float64) {
	from := map[string]time.Time{}
	for name := range gone {
		from[name] = t
	}
	return latencies(from, gone)
}

// keyWatch records when each APIKey of a namespace was first seen Active.
type keyWatch struct {
	mu     sync.Mutex
	active map[string]time.Time
	stop   context.CancelFunc
}

// Stop ends the watch.
func (kw *keyWatch) Stop() { kw.stop() }

func (kw *keyWatch) see(obj kruntime.Object) {
	if k, ok := obj.(*keymintv1alpha1.APIKey); ok && k.Status.Phase == keymintv1alpha1.PhaseActive {
		kw.mu.Lock()
		if _, seen := kw.active[k.Name]; !seen {
			kw.active[k.Name] = time.Now()
		}
		kw.mu.Unlock()
	}
}

// watchKeys notes when each APIKey in ns is first seen Active. When the API
// server ends the watch (under load it drops watchers it finds slow), it
// catches up with a list and watches again.
func (b *bench) watchKeys(ctx context.Context, ns string) (*keyWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	kw := &keyWatch{active: map[string]time.Time{}, stop: cancel}
	w, err := b.env.Client.Watch(ctx, &keymintv1alpha1.APIKeyList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		for {
			for ev := range w.ResultChan() {
				kw.see(ev.Object)
			}
			_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				list := &keymintv1alpha1.APIKeyList{}
				if err := b.env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
					return false, nil
				}
				for i := range list.Items {
					kw.see(&list.Items[i])
				}
				w, err = b.env.Client.Watch(ctx, &keymintv1alpha1.APIKeyList{}, client.InNamespace(ns),
					&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
				return err == nil, nil
			})
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return kw, nil
}

func (kw *keyWatch) count() int {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	return len(kw.active)
}

func (kw *keyWatch) waitFor(ctx context.Context, n int, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return kw.count() >= n, nil
	})
}

// createKeys creates n APIKeys named k-<i> for user(i) and returns when
// each create returned.
func (b *bench) createKeys(ctx context.Context, ns string, n int, user func(int) string, exp keymintv1alpha1.Expiration) (map[string]time.Time, error) {
	var mu sync.Mutex
	created := map[string]time.Time{}
	err := b.parallel(n, func(i int) error {
		k := &keymintv1alpha1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k-%d", i)},
			Spec:       keymintv1alpha1.APIKeySpec{User: user(i), Expiration: exp},
		}
		t := time.Now()
		if err := b.env.Client.Create(ctx, k); err != nil {
			return err
		}
		mu.Lock()
		created[k.Name] = t
		mu.Unlock()
		return nil
	})
	return created, err
}

func latencies(created, active map[string]time.Time) (p50, p99 float64) {
	var ds []float64
	for name, c := range created {
		if a, ok := active[name]; ok {
			ds = append(ds, a.Sub(c).Seconds())
		}
	}
	return percentiles(ds)
}

// percentiles are the p50 and p99 of ds (seconds); ds is sorted.
func percentiles(ds []float64) (p50, p99 float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)*50/100], ds[min(len(ds)-1, len(ds)*99/100)]
}

func perKey(before, after map[string]float64, n int) map[string]float64 {
	out := map[string]float64{}
	for method, v := range after {
		if d := v - before[method]; d > 0 {
			out[method] = d / float64(n)
		}
	}
	return out
}

var never = keymintv1alpha1.Expiration{Never: new(true)}

func sortedKeys(seq func(func(string) bool)) []string {
	out := slices.Collect(seq)
	slices.Sort(out)
	return out
}
