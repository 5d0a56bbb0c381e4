package auditserver

import (
	"encoding/json"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/tools/events"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/audit"
)

// maxBatchBytes bounds a batch's body; the API server's default batch of
// 400 Metadata-level events is far smaller.
const maxBatchBytes = 64 << 20

// serveEvents takes a batch of audit events, writes the records they amount
// to and only then answers 200. A batch it cannot write gets 500, which the
// API server retries; records already on file are not written twice.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !s.webhookCaller(r) {
		s.refuse(w, r, "not the API server: no valid client certificate or token")
		return
	}
	var batch auditv1.EventList
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBatchBytes)).Decode(&batch); err != nil {
		http.Error(w, "decoding the audit.k8s.io/v1 EventList: "+err.Error(), http.StatusBadRequest)
		return
	}
	if batch.APIVersion != auditv1.SchemeGroupVersion.String() || batch.Kind != "EventList" {
		http.Error(w, "the body is not an audit.k8s.io/v1 EventList", http.StatusBadRequest)
		return
	}
	var records []audit.Record
	var ended []string
	watches, _ := s.Resolver.(WatchTracker)
	for i := range batch.Items {
		ev := &batch.Items[i]
		if watches != nil && secretWatch(ev, s.ignored) {
			switch ev.Stage {
			case auditv1.StageResponseStarted:
				watches.WatchStarted(string(ev.AuditID))
			case auditv1.StageResponseComplete:
				ended = append(ended, string(ev.AuditID))
			}
		}
		records = append(records, Translate(ev, s.Resolver, s.ignored)...)
	}
	records, err := s.write(records)
	if err != nil {
		s.Logger.Error(err, "writing audit records failed; the API server will send the batch again", "records", len(records))
		http.Error(w, "the audit trail is unavailable", http.StatusInternalServerError)
		return
	}
	// Only now: a batch sent again must still find what its watches saw.
	for _, id := range ended {
		watches.WatchEnded(id)
	}
	w.WriteHeader(http.StatusOK)
	if s.Events != nil {
		s.Events.Mirror(records)
	}
}

// write writes records, with the repeats aggregated (see
// audit.Aggregator), and returns what it wrote.
func (s *Server) write(records []audit.Record) ([]audit.Record, error) {
	return s.repeats.Write(s.Trail, records, s.Clock.Now())
}

// EventMirror records Events that mirror audit records.
type EventMirror interface {
	Mirror(records []audit.Record)
}

// maxEventsPerRequest bounds the Events one request yields: a list of
// Secrets across the cluster is a view of every key, which the audit
// trail records in full but Events would only flood.
const maxEventsPerRequest = 10

// RecorderMirror mirrors views, mounts and denied views as Events on the
// APIKey. Deletions already have the controller's Events.
type RecorderMirror struct {
	Recorder events.EventRecorder
}

// Mirror implements EventMirror.
func (m RecorderMirror) Mirror(records []audit.Record) {
	perRequest := map[string]int{}
	for _, r := range records {
		perRequest[r.AuditID]++
	}
	for _, r := range records {
		eventType := corev1.EventTypeNormal
		switch r.Action {
		case audit.ActionViewDenied:
			eventType = corev1.EventTypeWarning
		case audit.ActionViewed, audit.ActionMounted:
		default:
			continue
		}
		if r.Name == "" || perRequest[r.AuditID] > maxEventsPerRequest {
			continue
		}
		regarding := &corev1.ObjectReference{
			APIVersion: keymintv1alpha1.GroupVersion.String(),
			Kind:       "APIKey",
			Namespace:  r.Namespace,
			Name:       r.Name,
			UID:        types.UID(r.UID),
		}
		m.Recorder.Eventf(regarding, nil, eventType, string(r.Action), string(r.Action), "%s (key %s)", r.Message, r.KeyID)
	}
}
