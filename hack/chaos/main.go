// Command chaos runs keymint through failures against a real control
// plane: the manager, as a process, is killed with SIGKILL at random moments
// while keys are created and deleted and audit batches arrive; two managers
// run at once without leader election, one of them paused into a stale
// cache; and kube-apiserver is killed and started again. A watch-based
// monitor checks keymint's invariants at every event and prints one line
// per invariant with its count. `make chaos` runs the full run; `make test`
// a short one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	var c config
	flag.IntVar(&c.kills, "kills", 60, "SIGKILLs of the manager during churn")
	flag.IntVar(&c.users, "users", 60, "users creating and deleting keys")
	flag.DurationVar(&c.twoManagers, "two-managers", 20*time.Second, "how long two managers run at once, without leader election")
	flag.Var(&c.outages, "outage", "an API server outage to run (repeatable; default 30s, 90s, 120s)")
	flag.StringVar(&keepDir, "keep", "", "a directory to keep the run's files in (manager logs, audit logs)")
	flag.Parse()
	if len(c.outages) == 0 {
		c.outages = durations{30 * time.Second, 90 * time.Second, 120 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	violations, err := run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if violations > 0 {
		os.Exit(1)
	}
}

// durations is a repeatable duration flag.
type durations []time.Duration

func (d *durations) String() string { return fmt.Sprint(*d) }

func (d *durations) Set(v string) error {
	t, err := time.ParseDuration(v)
	if err == nil {
		*d = append(*d, t)
	}
	return err
}
