package auditserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// ExportSubresource is the subresource an exporter must be allowed to get:
// `get apikeys/audit` in group keymint.io, cluster-wide or in the namespace
// it exports.
const ExportSubresource = "audit"

// Authorizer decides whether the holder of a bearer token may export the
// audit records of namespace ("" for all namespaces).
type Authorizer interface {
	Authorize(ctx context.Context, token, namespace string) (username string, allowed bool, reason string, err error)
}

// Delegated authenticates with a TokenReview and authorises with a
// SubjectAccessReview, both against the API server.
type Delegated struct {
	Client client.Client
}

// Authorize implements Authorizer.
func (d Delegated) Authorize(ctx context.Context, token, namespace string) (string, bool, string, error) {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := d.Client.Create(ctx, review); err != nil {
		return "", false, "", fmt.Errorf("reviewing the token: %w", err)
	}
	if !review.Status.Authenticated {
		return "", false, "the token is not valid", nil
	}
	user := review.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Group:       keymintv1alpha1.GroupVersion.Group,
			Resource:    "apikeys",
			Subresource: ExportSubresource,
			Verb:        "get",
			Namespace:   namespace,
		},
	}}
	if err := d.Client.Create(ctx, sar); err != nil {
		return user.Username, false, "", fmt.Errorf("reviewing access: %w", err)
	}
	return user.Username, sar.Status.Allowed, sar.Status.Reason, nil
}

// serveExport writes the records that pass the query's filter:
// from and to (RFC 3339; from inclusive, to exclusive), user, namespace,
// name (an APIKey), action and format (json, the default, or csv).
func (s *Server) serveExport(w http.ResponseWriter, r *http.Request) {
	token, ok := bearerToken(r)
	if !ok {
		s.refuse(w, r, "no bearer token")
		return
	}
	filter, format, err := parseExportQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	username, allowed, reason, err := s.Authorizer.Authorize(r.Context(), token, filter.Namespace)
	switch {
	case err != nil:
		s.Logger.Error(err, "authorising an audit export failed")
		http.Error(w, "authorising the request failed", http.StatusServiceUnavailable)
		return
	case username == "":
		s.refuse(w, r, reason)
		return
	case !allowed:
		s.Logger.Info("refused an audit export", "user", username, "namespace", filter.Namespace, "reason", reason)
		scope := "cluster-wide"
		if filter.Namespace != "" {
			scope = "in namespace " + filter.Namespace
		}
		http.Error(w, fmt.Sprintf("user %q cannot get apikeys/audit in group %s %s", username, keymintv1alpha1.GroupVersion.Group, scope), http.StatusForbidden)
		return
	}
	if s.Log == nil {
		http.Error(w, "the audit trail is not kept in a file: start the manager with --audit-log-path", http.StatusServiceUnavailable)
		return
	}
	s.Logger.Info("audit export", "user", username, "filter", filter)
	if format == audit.FormatCSV {
		w.Header().Set("Content-Type", "text/csv")
	} else {
		w.Header().Set("Content-Type", "application/jsonl")
	}
	// Lines the log holds that are not records are reported in a trailer,
	// after every record that could be read.
	w.Header().Set("Trailer", audit.ExportErrorTrailer)
	if err := audit.Export(s.Log, filter, format, w); err != nil {
		s.Logger.Error(err, "exporting the audit trail failed")
		w.Header().Set(audit.ExportErrorTrailer, err.Error())
	}
}

func parseExportQuery(r *http.Request) (audit.Filter, audit.Format, error) {
	q := r.URL.Query()
	f := audit.Filter{User: q.Get("user"), Namespace: q.Get("namespace"), Name: q.Get("name"), Action: audit.Action(q.Get("action"))}
	for param, t := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(param); v != "" {
			parsed, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, "", fmt.Errorf("%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", param, v)
			}
			*t = parsed
		}
	}
	if f.Name != "" && f.Namespace == "" {
		return f, "", fmt.Errorf("name: an APIKey is named with its namespace")
	}
	if f.Action != "" {
		if err := audit.ValidAction(f.Action); err != nil {
			return f, "", fmt.Errorf("action: %w", err)
		}
	}
	format := audit.Format(q.Get("format"))
	switch format {
	case "", audit.FormatJSON:
		format = audit.FormatJSON
	case audit.FormatCSV:
	default:
		return f, "", fmt.Errorf("format: want json or csv, got %q", format)
	}
	return f, format, nil
}
