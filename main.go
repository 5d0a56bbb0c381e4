// Command manager runs the keymint operator: it parses the flags and runs
// the manager internal/app builds from them.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keymint/keymint/internal/app"
	"github.com/keymint/keymint/internal/version"
)

func main() {
	o := app.NewOptions()
	o.AddFlags(flag.CommandLine)
	showVersion := flag.Bool("version", false, "Print the manager's version and exit.")
	logOpts := zap.Options{Development: false}
	logOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println("keymint manager", version.Version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&logOpts)))
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "keymint: "+err.Error())
		os.Exit(2)
	}
	ctx := ctrl.SetupSignalHandler()
	mgr, err := app.New(ctx, ctrl.GetConfigOrDie(), o, app.Deps{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keymint: "+err.Error())
		os.Exit(1)
	}
	ctrl.Log.WithName("setup").Info("starting manager", "components", mgr.Components,
		"maxKeysPerUser", o.MaxKeysPerUser, "slotNamespace", o.SlotNamespace)
	if err := mgr.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "keymint: "+err.Error())
		os.Exit(1)
	}
}
