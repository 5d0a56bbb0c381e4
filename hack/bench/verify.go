package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

// The verify scenario's load: as many concurrent clients as the manager's
// default reconcilers, for a fixed time, on each server in turn.
const (
	verifyClients  = 32
	verifyDuration = 10 * time.Second
)

// verifyLoad: n Active keys, then the same load generator against a bare
// Go server that answers 200 (the floor) and against keymint's verifier,
// over HTTP and over gRPC, on the same machine.
func (b *bench) verifyLoad(ctx context.Context, n int) ([]result, error) {
	if err := b.activeKeys(ctx, n); err != nil {
		return nil, err
	}
	values, err := b.keyValues(ctx)
	if err != nil {
		return nil, err
	}
	// The first use of each key writes its status.lastUsedAt and a Used
	// record, once an hour: present each once and let those writes settle,
	// so that the run measures checks, not the hourly writes.
	ask, closeFn, err := asker("http", b.verifyAddr)
	if err != nil {
		return nil, err
	}
	err = parallel(verifyClients, len(values), func(i int) error {
		_, err := ask(ctx, values[i])
		return err
	})
	closeFn()
	if err != nil {
		return nil, err
	}
	b.settle()
	var out []result
	for _, proto := range []string{"http", "grpc"} {
		r := result{Scenario: "verify-" + proto, N: len(values)}
		floorAddr, stop, err := floorProcess(ctx, proto)
		if err != nil {
			return nil, err
		}
		floor, err := load(ctx, proto, floorAddr, values)
		stop()
		if err != nil {
			return nil, fmt.Errorf("the %s floor: %w", proto, err)
		}
		addr := b.verifyAddr
		if proto == "grpc" {
			addr = b.extAuthzAddr
		}
		before, err := b.verifyHistogram(proto)
		if err != nil {
			return nil, err
		}
		got, err := load(ctx, proto, addr, values)
		if err != nil {
			return nil, fmt.Errorf("keymint over %s: %w", proto, err)
		}
		after, err := b.verifyHistogram(proto)
		if err != nil {
			return nil, err
		}
		r.Ratio = got.perSecond / floor.perSecond
		r.P50Seconds, r.P99Seconds = after.quantile(before, 0.5), after.quantile(before, 0.99)
		r.Notes = append(r.Notes, fmt.Sprintf("%d clients for %s over %d keys: floor (bare Go server answering 200) %.0f/s, keymint %.0f/s (%.2fx of the floor; target ≥ 0.7x); "+
			"server-side p99 ≤ %.3g ms (target ≤ 1 ms); client-side p99 floor %.3g ms, keymint %.3g ms; %d refused; each key used once before, as in steady state",
			verifyClients, verifyDuration, len(values), floor.perSecond, got.perSecond, r.Ratio,
			r.P99Seconds*1000, floor.p99.Seconds()*1000, got.p99.Seconds()*1000, got.refused))
		out = append(out, r)
	}
	return out, nil
}

// keyValues reads the plaintext of every minted key, as an administrator.
func (b *bench) keyValues(ctx context.Context) ([]string, error) {
	list := &corev1.SecretList{}
	if err := b.env.Client.List(ctx, list, client.InNamespace("keys"),
		client.MatchingLabels{keymintv1alpha1.LabelManagedBy: keymintv1alpha1.ManagedBy}); err != nil {
		return nil, err
	}
	values := make([]string, 0, len(list.Items))
	for i := range list.Items {
		values = append(values, string(list.Items[i].Data[keymintv1alpha1.DataKey]))
	}
	return values, nil
}

type loadResult struct {
	perSecond float64
	p99       time.Duration
	refused   int64
}

// load runs verifyClients clients for verifyDuration against addr, each
// presenting random keys of values, and measures what they get.
func load(ctx context.Context, proto, addr string, values []string) (loadResult, error) {
	ask, closeFn, err := asker(proto, addr)
	if err != nil {
		return loadResult{}, err
	}
	defer closeFn()
	var (
		done    atomic.Int64
		refused atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		wg      sync.WaitGroup
		failure atomic.Value
	)
	deadline := time.Now().Add(verifyDuration)
	for c := range verifyClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			var mine []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				ok, err := ask(ctx, values[rng.IntN(len(values))])
				if err != nil {
					failure.Store(err)
					return
				}
				mine = append(mine, time.Since(start))
				done.Add(1)
				if !ok {
					refused.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, ok := failure.Load().(error); ok {
		return loadResult{}, err
	}
	slices.Sort(lat)
	r := loadResult{perSecond: float64(done.Load()) / verifyDuration.Seconds(), refused: refused.Load()}
	if len(lat) > 0 {
		r.p99 = lat[len(lat)*99/100]
	}
	return r, nil
}

// asker is one client of proto to addr: ask presents a key and says
// whether it was accepted.
func asker(proto, addr string) (ask func(context.Context, string) (bool, error), closeFn func(), err error) {
	if proto == "http" {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: verifyClients, MaxConnsPerHost: verifyClients}}
		url := "http://" + addr + "/verify/ns/keys"
		return func(ctx context.Context, key string) (bool, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return false, err
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := hc.Do(req)
			if err != nil {
				return false, err
			}
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		}, hc.CloseIdleConnections, nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	authz := authv3.NewAuthorizationClient(conn)
	return func(ctx context.Context, key string) (bool, error) {
		resp, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer " + key}}},
			ContextExtensions: map[string]string{"keymint-namespace": "keys"},
		}})
		if err != nil {
			return false, err
		}
		return codes.Code(resp.GetStatus().GetCode()) == codes.OK, nil
	}, func() { _ = conn.Close() }, nil
}

// bareAuthz answers every check OK: the gRPC floor.
type bareAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (bareAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

// floorServerEnv makes the bench binary serve a floor instead: its value
// is the protocol, and the address it listens on is printed first.
const floorServerEnv = "KEYMINT_BENCH_FLOOR_SERVER"

// floorProcess runs the floor of proto as a process of its own, as the
// manager is one: in the bench's own process, the load generator would hand
// requests to it without crossing processes, which the manager pays for.
func floorProcess(ctx context.Context, proto string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), floorServerEnv+"="+proto)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the floor server did not start: %w", err)
	}
	return strings.TrimSpace(addr), stop, nil
}

// serveFloor serves the floor of proto until killed, printing its address.
func serveFloor(proto string) error {
	addr, _, err := bareServer(proto)
	if err != nil {
		return err
	}
	fmt.Println(addr)
	select {}
}

// bareServer serves the floor of proto on a free port: a Go server that
// answers 200 (or OK) to everything.
func bareServer(proto string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	if proto == "http" {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
			ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		return ln.Addr().String(), func() { _ = srv.Close() }, nil
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, bareAuthz{})
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), srv.Stop, nil
}

// histogram is keymint_verification_duration_seconds of one protocol:
// cumulative counts by upper bound.
type histogram map[float64]float64

func (b *bench) verifyHistogram(proto string) (histogram, error) {
	resp, err := http.Get("http://" + b.metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	h := histogram{}
	prefix := `keymint_verification_duration_seconds_bucket{`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, `protocol="`+proto+`"`) {
			continue
		}
		_, le, _ := strings.Cut(line, `le="`)
		le, _, _ = strings.Cut(le, `"`)
		bound := math.Inf(1)
		if le != "+Inf" {
			if bound, err = strconv.ParseFloat(le, 64); err != nil {
				return nil, err
			}
		}
		fields := strings.Fields(line)
		v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
		h[bound] = v
	}
	return h, sc.Err()
}

// quantile is the upper bound of the bucket that holds quantile q of the
// observations made between before and h.
func (h histogram) quantile(before histogram, q float64) float64 {
	bounds := make([]float64, 0, len(h))
	for b := range h {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := h[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	for _, b := range bounds {
		if h[b]-before[b] >= q*total {
			return b
		}
	}
	return bounds[len(bounds)-1]
}
