package deletions

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestEveryReviewIsAllowedAndOnlyDeletesAreRead: a body that is no review
// is a 400; a review of anything but a delete is allowed without a read
// (the handler has no client here: a read would panic), and a dry-run
// delete too.
func TestEveryReviewIsAllowedAndOnlyDeletesAreRead(t *testing.T) {
	h := &Handler{}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader([]byte("not a review"))))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("a body that is no review: %d", rec.Code)
	}
	dryRun := true
	for name, req := range map[string]*admissionv1.AdmissionRequest{
		"create":           {UID: "1", Operation: admissionv1.Create, Resource: apikeys},
		"dry-run delete":   {UID: "2", Operation: admissionv1.Delete, Resource: apikeys, DryRun: &dryRun},
		"subresource":      {UID: "3", Operation: admissionv1.Delete, Resource: apikeys, SubResource: "status"},
		"another resource": {UID: "4", Operation: admissionv1.Delete, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
	} {
		raw, _ := json.Marshal(&admissionv1.AdmissionReview{Request: req})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(raw)))
		answer := &admissionv1.AdmissionReview{}
		if err := json.Unmarshal(rec.Body.Bytes(), answer); err != nil || answer.Response == nil {
			t.Fatalf("%s: no review in the answer: %v %s", name, err, rec.Body)
		}
		if !answer.Response.Allowed || answer.Response.UID != req.UID {
			t.Errorf("%s: %+v", name, answer.Response)
		}
	}
}
