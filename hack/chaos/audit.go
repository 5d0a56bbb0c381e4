package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	keymintv1alpha1 "github.com/keymint/keymint/api/v1alpha1"
	"github.com/keymint/keymint/internal/auditserver"
	"github.com/keymint/keymint/internal/testenv"
)

// auditPoster sends audit batches to the manager's webhook as the API
// server does: each batch again until it is acknowledged, and some twice.
// Each event is a read of the anchor key's Secret, so each is one record.
type auditPoster struct {
	url, token string
	ns, secret string
	client     *http.Client

	mu    sync.Mutex
	acked []string
	seq   int
	twice int
}

func newAuditPoster(w *testenv.AuditWebhook, ns string, anchor *keymintv1alpha1.APIKey) *auditPoster {
	token, _ := os.ReadFile(w.TokenFile)
	return &auditPoster{
		url: "https://" + w.Addr + auditserver.EventsPath, token: strings.TrimSpace(string(token)),
		ns: ns, secret: anchor.SecretNameOrDefault(),
		// The webhook's certificate is the harness's own, self-signed.
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, //nolint:gosec // a local test server
	}
}

func (p *auditPoster) run(ctx context.Context) {
	for ctx.Err() == nil {
		pause(ctx, 100*time.Millisecond)
		p.mu.Lock()
		p.seq++
		batch := p.batch(p.seq)
		p.mu.Unlock()
		for ctx.Err() == nil && !p.post(batch) {
			pause(ctx, 200*time.Millisecond)
		}
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		for _, ev := range batch.Items {
			p.acked = append(p.acked, string(ev.AuditID))
		}
		if rand.N(10) == 0 {
			p.twice++
			p.mu.Unlock()
			p.post(batch)
			continue
		}
		p.mu.Unlock()
	}
}

func (p *auditPoster) batch(seq int) auditv1.EventList {
	list := auditv1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "audit.k8s.io/v1"}}
	for i := range 1 + rand.N(5) {
		now := metav1.NewMicroTime(time.Now())
		list.Items = append(list.Items, auditv1.Event{
			AuditID:    types.UID(fmt.Sprintf("chaos-%06d-%d", seq, i)),
			Stage:      auditv1.StageResponseComplete,
			RequestURI: "/api/v1/namespaces/" + p.ns + "/secrets/" + p.secret,
			Verb:       "get",
			// A reader of its own for each event: repeated views by one
			// reader are one record and a count (see auditserver's
			// repeats), and this checks that every first is durable.
			User:                     authenticationv1.UserInfo{Username: fmt.Sprintf("chaos-reader-%06d-%d", seq, i)},
			ObjectRef:                &auditv1.ObjectReference{Resource: "secrets", Namespace: p.ns, Name: p.secret, APIVersion: "v1"},
			ResponseStatus:           &metav1.Status{Code: 200},
			RequestReceivedTimestamp: now,
			StageTimestamp:           now,
		})
	}
	return list
}

// post sends batch once and reports whether it was acknowledged.
func (p *auditPoster) post(batch auditv1.EventList) bool {
	body, _ := json.Marshal(batch)
	req, err := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *auditPoster) acknowledged() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.acked...)
}

func (p *auditPoster) acknowledgedCount() int { return len(p.acknowledged()) }
