// Package cli is the kubectl apikey plugin: generate, list, reveal, rotate
// and delete API keys with kubectl's own flags (cli-runtime) and cobra.
package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	auditv1alpha1 "github.com/keymint/keymint/api/audit/v1alpha1"
	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/version"
)

// Exit codes of kubectl-apikey.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitError: the command failed; the one-line message says what to do.
	ExitError = 1
	// ExitUsage: the command line was wrong.
	ExitUsage = 2
)

// Version is the plugin's version: keymint's release (internal/version).
var Version = version.Version

// userAgent is how the plugin names itself to the API server and the audit
// endpoint.
func userAgent() string { return "kubectl-apikey/" + Version }

// Scheme knows the types the plugin reads and writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(keymintv1alpha1.AddToScheme(Scheme))
	utilruntime.Must(auditv1alpha1.AddToScheme(Scheme))
}

// Options are what every command shares: kubectl's connection flags, the
// streams, and a clock for relative times.
type Options struct {
	ConfigFlags *genericclioptions.ConfigFlags
	Streams     genericiooptions.IOStreams
	Clock       clock.PassiveClock

	client client.WithWatch
}

// Client returns a client for the cluster the flags point at.
func (o *Options) Client() (client.WithWatch, error) {
	if o.client != nil {
		return o.client, nil
	}
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config): %w", err)
	}
	// With no kubeconfig at all, client-go falls back to localhost:8080,
	// whose refusal would be the only message.
	if raw, err := o.ConfigFlags.ToRawKubeConfigLoader().RawConfig(); err == nil && len(raw.Clusters) == 0 &&
		(o.ConfigFlags.APIServer == nil || *o.ConfigFlags.APIServer == "") {
		return nil, errors.New("no cluster configured: point kubectl at one (--kubeconfig, $KUBECONFIG or ~/.kube/config)")
	}
	cfg.UserAgent = userAgent()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, err
	}
	o.client = c
	return c, nil
}

// Namespace is the namespace of -n, or the kubeconfig context's.
func (o *Options) Namespace() (string, error) {
	ns, _, err := o.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// whoAmI is the caller's username, as the API server authenticates it.
func (o *Options) whoAmI(ctx context.Context) (string, error) {
	c, err := o.Client()
	if err != nil {
		return "", err
	}
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("finding out who you are (pass --user): %w", err)
	}
	return review.Status.UserInfo.Username, nil
}

// namespaceMissing reports whether the API server says namespace ns does
// not exist; false when it will not say.
func (o *Options) namespaceMissing(ctx context.Context, ns string) bool {
	c, err := o.Client()
	if err != nil {
		return false
	}
	return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
}

// UsageError marks a wrong command line (exit code 2).
type UsageError struct{ msg string }

func (e UsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// NewCommand is the kubectl-apikey root command.
func NewCommand(o *Options) *cobra.Command {
	if o.ConfigFlags == nil {
		o.ConfigFlags = genericclioptions.NewConfigFlags(true)
		// --user names the key's owner here; pick a kubeconfig user with --context.
		o.ConfigFlags.AuthInfoName = nil
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	cmd := &cobra.Command{
		Use:   "kubectl-apikey",
		Short: "Generate, list, reveal, rotate and delete your API keys",
		Long: `kubectl apikey manages keymint API keys: APIKey resources whose keys the
keymint operator mints into Secrets. A user holds up to two active keys; the
second is for rollover without downtime.

Exit codes: 0 success, 1 error (the message says what to do next),
2 wrong command line.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Help and completion name the command as kubectl runs it.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl apikey"},
	}
	cmd.SetIn(o.Streams.In)
	cmd.SetOut(o.Streams.Out)
	cmd.SetErr(o.Streams.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{flagErrorText(err)} })
	cmd.AddCommand(
		newCreateCommand(o),
		newListCommand(o),
		newRevealCommand(o),
		newRotateCommand(o),
		newDeleteCommand(o),
		newDeactivateCommand(o),
		newActivateCommand(o),
		newStatusCommand(o),
		newAuditCommand(o),
		newCheckCommand(o),
		newVersionCommand(o),
	)
	return cmd
}

func newVersionCommand(o *Options) *cobra.Command {
	var short bool
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			switch output {
			case "":
			case "json":
				fmt.Fprintf(o.Streams.Out, "{\n  \"pluginVersion\": %q\n}\n", Version)
				return nil
			case "yaml":
				fmt.Fprintf(o.Streams.Out, "pluginVersion: %s\n", Version)
				return nil
			default:
				return usageErrorf("--output must be json or yaml, not %q", output)
			}
			if short {
				fmt.Fprintln(o.Streams.Out, Version)
				return nil
			}
			fmt.Fprintln(o.Streams.Out, "kubectl-apikey", Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&short, "short", false, "print the version number only")
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml")
	return cmd
}

// Execute runs the command line args and returns the exit code, printing a
// failure as one line on stderr.
func Execute(o *Options, args []string) int {
	cmd := NewCommand(o)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(o.Streams.ErrOut, "error: "+explain(err))
	// cobra's own command-line errors (an unknown command) are usage too.
	if errors.As(err, new(UsageError)) || strings.HasPrefix(err.Error(), "unknown command") {
		return ExitUsage
	}
	return ExitError
}

// flagErrorText says what is wrong with a flag's value in words, not in
// strconv's: `invalid argument "six" for "--months" flag: strconv.ParseInt:
// parsing "six": invalid syntax` becomes `--months: "six" is not a whole
// number`.
func flagErrorText(err error) string {
	m := invalidFlagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	flag, value, what := m[2], m[1], "a valid value"
	switch {
	case strings.Contains(m[3], "ParseInt"), strings.Contains(m[3], "ParseUint"):
		what = "a whole number"
	case strings.Contains(m[3], "ParseFloat"):
		what = "a number"
	case strings.Contains(m[3], "ParseBool"):
		what = "true or false"
	case strings.Contains(m[3], "time: "):
		what = "a duration such as 90s, 30m or 24h"
	}
	return fmt.Sprintf("%s: %q is not %s", flag, value, what)
}

// invalidValue is the start of a validation cause that repeats the value.
var invalidValue = regexp.MustCompile(`^Invalid value: ("[^"]*"|[^:]*): `)

var invalidFlagValue = regexp.MustCompile(`^invalid argument "(.*)" for "(?:-\w, )?(--[\w-]+)" flag: (.*)$`)

// explain turns an error into one line that says what to do next.
func explain(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		details := status.Status().Details
		switch {
		// A refusal of the API's validation: each cause, with its field.
		case apierrors.IsInvalid(err) && details != nil && len(details.Causes) > 0:
			var causes []string
			for _, c := range details.Causes {
				msg := invalidValue.ReplaceAllString(c.Message, "")
				if c.Field != "" && c.Field != "<nil>" {
					msg = c.Field + ": " + msg
				}
				causes = append(causes, msg)
			}
			return fmt.Sprintf("%s %q is invalid: %s", strings.TrimSuffix(details.Kind, "s"), details.Name, strings.Join(causes, "; "))
		case apierrors.IsNotFound(err) && details != nil && details.Kind == "apikeys":
			return fmt.Sprintf("API key %q not found; `kubectl apikey list` shows your keys", details.Name)
		case apierrors.IsNotFound(err) && details != nil && details.Kind == "namespaces":
			return fmt.Sprintf("namespace %q does not exist; choose another with -n", details.Name)
		// RBAC refused the request; an admission policy's refusal says
		// itself what is needed, and the caller holds the role already.
		case apierrors.IsForbidden(err) && details != nil && details.Kind == "apikeys" &&
			strings.Contains(status.Status().Message, "cannot "):
			// Who may not read namespaces cannot tell a missing one from
			// one without a grant.
			return status.Status().Message + " (check the namespace, -n; or ask an administrator for the keymint-user role there)"
		}
		return status.Status().Message
	}
	if usage, ok := errors.AsType[UsageError](err); ok {
		return usage.msg + " (see --help)"
	}
	return err.Error()
}
