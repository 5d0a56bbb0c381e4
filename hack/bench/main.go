// Command bench measures keymint against the floor of the API server it
// runs on: a local kube-apiserver and etcd (bin/k8s), the manager as its
// own process (bin/manager). `make bench` runs it; see
// docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/testenv"
)

var (
	scheme      = runtime.NewScheme()
	managerArgs []string
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(scheme))
	utilruntime.Must(auditv1alpha1.AddToScheme(scheme))
}

// result is one scenario's numbers; the JSON file holds them all.
type result struct {
	Scenario        string             `json:"scenario"`
	N               int                `json:"n"`
	FloorSeconds    float64            `json:"floorSeconds,omitempty"`
	KeymintSeconds  float64            `json:"keymintSeconds,omitempty"`
	Ratio           float64            `json:"ratio,omitempty"`
	JobFloorSeconds float64            `json:"jobFloorSeconds,omitempty"`
	JobRatio        float64            `json:"jobRatio,omitempty"`
	P50Seconds      float64            `json:"p50Seconds,omitempty"`
	P99Seconds      float64            `json:"p99Seconds,omitempty"`
	PeakRSSMiB      float64            `json:"peakRSSMiB,omitempty"`
	HeapMiB         float64            `json:"heapMiB,omitempty"`
	HeapPerKeyBytes float64            `json:"heapPerKeyBytes,omitempty"`
	RequestsPerKey  map[string]float64 `json:"requestsPerKey,omitempty"`
	Writes          float64            `json:"writes,omitempty"`
	Notes           []string           `json:"notes,omitempty"`
}

func main() {
	if proto := os.Getenv(floorServerEnv); proto != "" {
		if err := serveFloor(proto); err != nil {
			fmt.Fprintln(os.Stderr, "bench floor:", err)
			os.Exit(1)
		}
		return
	}
	var (
		scenarios = flag.String("scenarios", "throughput,idle,cap,expiry,access,verify,rotation,reveal", "comma-separated: throughput, idle, cap, expiry, isolation, scale, access, verify, rotation, reveal")
		n         = flag.Int("n", 1000, "keys in the throughput, idle, expiry and rotation scenarios")
		workers   = flag.Int("workers", 16, "concurrent clients creating objects")
		scaleN    = flag.Int("scale-n", 10000, "keys in the scale, access and verify scenarios")
		unrelated = flag.Int("unrelated", 10000, "unrelated 100 KiB Secrets in the isolation scenario")
		out       = flag.String("json", "bin/bench.json", "where to write the results")
	)
	flag.StringVar(&heapProfile, "heap-profile", "", "write the manager's heap profile after the scale scenario settles to this file (go tool pprof)")
	flag.StringVar(&apiserverProfile, "apiserver-profile", "", "write a CPU profile of kube-apiserver taken while the throughput scenario issues keys to this file (go tool pprof)")
	flag.Func("manager-arg", "an extra flag for bin/manager (repeatable), such as --max-concurrent-reconciles=32", func(v string) error {
		managerArgs = append(managerArgs, v)
		return nil
	})
	flag.Parse()
	if err := run(strings.Split(*scenarios, ","), *n, *workers, *scaleN, *unrelated, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func init() {
	// envtest's own logs are not part of the output.
	logf.SetLogger(logr.Discard())
}

func run(scenarios []string, n, workers, scaleN, unrelated int, out string) error {
	ctx := context.Background()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		_ = os.Setenv("KUBEBUILDER_ASSETS", filepath.Join(root, "bin", "k8s"))
	}
	var results []result
	for _, s := range scenarios {
		// Each scenario gets a control plane of its own, so that none
		// measures what another left behind.
		var opts []testenv.Option
		if strings.TrimSpace(s) == "reveal" {
			// Reveals go through the aggregation layer.
			dir, err := os.MkdirTemp("", "keymint-bench-api-")
			if err != nil {
				return err
			}
			defer func() { _ = os.RemoveAll(dir) }()
			opts = append(opts, testenv.WithAggregation(dir))
		}
		env, err := testenv.Start(ctx, filepath.Join(root, "config"), scheme, opts...)
		if err != nil {
			return err
		}
		b := &bench{env: env, root: root, workers: workers}
		var (
			r  result
			rs []result
		)
		switch strings.TrimSpace(s) {
		case "throughput":
			r, err = b.throughput(ctx, n)
		case "idle":
			r, err = b.idle(ctx, n)
		case "cap":
			r, err = b.capUnderLoad(ctx, 20, 10)
		case "expiry":
			r, err = b.expiryPrecision(ctx, n)
		case "isolation":
			r, err = b.isolation(ctx, n, unrelated)
		case "scale":
			r, err = b.scale(ctx, scaleN)
		case "access":
			r, err = b.access(ctx, scaleN)
		case "verify":
			rs, err = b.verifyLoad(ctx, scaleN)
		case "rotation":
			r, err = b.rotation(ctx, n)
		case "reveal":
			r, err = b.reveal(ctx, n)
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		b.stop()
		_ = env.Stop()
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		if rs == nil {
			rs = []result{r}
		}
		results = append(results, rs...)
		printTable(results)
	}
	raw, err := json.MarshalIndent(map[string]any{"machine": machine(), "results": results}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		return err
	}
	fmt.Println("\nwrote", out)
	return nil
}

func printTable(results []result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nSCENARIO\tN\tFLOOR s\tKEYMINT s\tRATIO\tP50 s\tP99 s\tPEAK RSS MiB\tHEAP MiB\tHEAP/KEY B\tREQUESTS/KEY\tNOTES")
	for _, r := range results {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.N,
			num(r.FloorSeconds), num(r.KeymintSeconds), num(r.Ratio), num(r.P50Seconds), num(r.P99Seconds),
			num(r.PeakRSSMiB), num(r.HeapMiB), num(r.HeapPerKeyBytes), verbs(r.RequestsPerKey), strings.Join(r.Notes, "; "))
	}
	_ = w.Flush()
}

func num(f float64) string {
	if f == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3g", f)
}

func verbs(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%.2f", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func machine() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	model := ""
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
			break
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s", model, runtimeNumCPU(), time.Now().UTC().Format("2006-01-02"))
}
