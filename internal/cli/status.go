package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
)

func newStatusCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:               "status NAME",
		Short:             "Show an API key's state, expiry, conditions and events",
		Args:              exactlyOneName,
		ValidArgsFunction: completeAPIKeyNames(o),
		RunE:              func(cmd *cobra.Command, args []string) error { return status(cmd.Context(), o, args[0]) },
	}
}

func status(ctx context.Context, o *Options, name string) error {
	key, err := getKey(ctx, o, name)
	if err != nil {
		return err
	}
	now := o.Clock.Now()
	w := printers.GetNewTabWriter(o.Streams.Out)
	row := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, v) }
	row("Name", key.Namespace+"/"+key.Name)
	row("User", key.Spec.User)
	row("Phase", orDash(string(key.Status.Phase)))
	row("State", stateText(key))
	row("Key ID", orDash(key.Status.KeyID))
	row("Key hash", orDash(key.Status.KeyHash))
	row("Secret", secretText(key))
	if key.Status.IssuedAt != nil {
		row("Issued", key.Status.IssuedAt.UTC().Format(time.RFC3339))
	} else {
		row("Issued", "-")
	}
	row("Expires", expiresText(key, now))
	row("Last used", lastUsedText(key, now))
	row("Revision", revisionText(key))
	row("Renews", renewsText(key, now))
	if p := key.Status.PreviousKey; p != nil {
		row("Previous key", previousKeyText(p, now))
	}
	if key.Status.Phase != keymintv1alpha1.PhaseActive {
		row("Why", waitingReason(key))
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(o.Streams.Out, "\nConditions:")
	w = printers.GetNewTabWriter(o.Streams.Out)
	fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
	for _, c := range key.Status.Conditions {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, ageOf(c.LastTransitionTime.Time, now), c.Message)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	cl, _ := o.Client()
	events := &corev1.EventList{}
	err = cl.List(ctx, events, client.InNamespace(key.Namespace), client.MatchingFieldsSelector{
		Selector: fields.SelectorFromSet(fields.Set{"involvedObject.name": key.Name, "involvedObject.kind": "APIKey"}),
	})
	if apierrors.IsForbidden(err) {
		// keymint-user does not grant reading Events: a namespace's Events
		// concern every object in it, not only the user's keys.
		fmt.Fprintf(o.Streams.Out, "\nEvents: not readable with your role (they concern every object in the namespace); "+
			"the conditions above, with when each began, are the key's history. An administrator sees them with "+
			"`kubectl events -n %s --for apikey/%s`.\n", key.Namespace, key.Name)
		return nil
	}
	if err != nil {
		fmt.Fprintf(o.Streams.Out, "\nEvents: not readable (%s)\n", explain(err))
		return nil
	}
	slices.SortFunc(events.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	fmt.Fprintln(o.Streams.Out, "\nEvents:")
	w = printers.GetNewTabWriter(o.Streams.Out)
	fmt.Fprintln(w, "  AGE\tTYPE\tREASON\tMESSAGE")
	for _, e := range events.Items {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", ageOf(eventTime(e), now), e.Type, e.Reason, e.Message)
	}
	return w.Flush()
}

func eventTime(e corev1.Event) time.Time {
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.LastTimestamp.Time
}

// revisionText is how many keys the APIKey has been issued.
func revisionText(key *keymintv1alpha1.APIKey) string {
	if key.Status.Revision == 0 {
		return "-"
	}
	return strconv.FormatInt(key.Status.Revision, 10)
}

// previousKeyText is a renewed key's predecessor, which still works: its
// ID, until when, and its last use.
func previousKeyText(p *keymintv1alpha1.PreviousKey, now time.Time) string {
	used := "never used since the renewal"
	if p.LastUsedAt != nil {
		used = "last used " + span(p.LastUsedAt.Time, now) + " ago"
	}
	return fmt.Sprintf("%s, works until %s (%s), %s", p.KeyID, p.ExpiresAt.UTC().Format(time.RFC3339), relative(now, p.ExpiresAt.Time), used)
}

// secretText is where the key is: its Secret while issued (Active or
// Inactive); an expired or suspended key's Secret is gone.
func secretText(key *keymintv1alpha1.APIKey) string {
	switch {
	case key.Status.SecretName == "":
		return "-"
	case !key.Status.Phase.Issued():
		return fmt.Sprintf("- (Secret %s was deleted when the key became %s)", key.Status.SecretName, key.Status.Phase)
	}
	return key.Status.SecretName
}

// stateText is spec.state, with who set it and why when it is Inactive.
func stateText(key *keymintv1alpha1.APIKey) string {
	if !key.Inactive() {
		return string(keymintv1alpha1.StateActive)
	}
	return string(keymintv1alpha1.StateInactive) + key.StateNote()
}
