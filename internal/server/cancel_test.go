package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/agentharness/harness/internal/audit"
)

// blocker holds the upstream's answer to GET /customers/block-{name} until
// the test releases it, and tells when the gateway gave the request up.
type blocker struct {
	mu                     sync.Mutex
	started, release, gone map[string]chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: map[string]chan struct{}{}, release: map[string]chan struct{}{}, gone: map[string]chan struct{}{}}
}

func (b *blocker) ch(m map[string]chan struct{}, name string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := m[name]
	if !ok {
		c = make(chan struct{})
		m[name] = c
	}
	return c
}

// Started, Release and Gone: the upstream request for name has begun;
// let it answer; wait until the gateway abandoned it (its call cancelled).
func (b *blocker) Started(name string) { <-b.ch(b.started, name) }
func (b *blocker) Release(name string) { close(b.ch(b.release, name)) }
func (b *blocker) Gone(name string)    { <-b.ch(b.gone, name) }

func (b *blocker) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/customers/block-")
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		close(b.ch(b.started, name))
		select {
		case <-r.Context().Done(): // the gateway gave the call up
			close(b.ch(b.gone, name))
		case <-b.ch(b.release, name):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"customer_id":"block-%s","note":"answered"}`, name)
		}
	})
}

// answer is a call's answer and its audit record.
type answer struct {
	out outcome
	rec *audit.Record
}

// startCall makes a tools/call of crm_get_customer for block-{name} with
// request id id, and returns where its answer will arrive. hdr nil is a
// 2026-07-28 call; otherwise body and headers are those of a legacy
// session.
func startCall(t *testing.T, f *fixture, token, id, name string, legacySession string) <-chan answer {
	t.Helper()
	body := modernCall(id, "crm_get_customer", `{"id":"block-`+name+`"}`)
	hdr := modernHeaders("crm_get_customer")
	if legacySession != "" {
		body = `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"crm_get_customer","arguments":{"id":"block-` + name + `"}}}`
		hdr = map[string]string{"Mcp-Session-Id": legacySession, "Mcp-Protocol-Version": "2025-06-18"}
	}
	done := make(chan answer, 1)
	go func() {
		resp, out, err := tryDo(f.url+"/mcp", token, body, hdr)
		if err != nil {
			t.Error(err)
			done <- answer{}
			return
		}
		a := answer{out: normalise(resp, out)}
		for _, r := range f.audit.records() {
			if strings.Contains(string(r.Input), `"block-`+name+`"`) {
				a.rec = &r
			}
		}
		done <- a
	}()
	return done
}

// cancelBody is a notifications/cancelled naming requestId id (raw JSON).
func cancelBody(id string) string {
	return `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + id + `,"reason":"user gave up"}}`
}

var modernCancelHeaders = map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "notifications/cancelled"}

// cancelView is what a client sees of the answer to a cancel.
type cancelView struct {
	Status      int
	Body        string
	ContentType string
	SessionID   string
}

func sendCancel(t *testing.T, f *fixture, token, body string, hdr map[string]string) cancelView {
	t.Helper()
	resp, out := rawDo(t, http.MethodPost, f.url+"/mcp", token, body, hdr)
	return cancelView{resp.StatusCode, out, resp.Header.Get("Content-Type"), resp.Header.Get("Mcp-Session-Id")}
}

// answered reports whether a is the upstream's answer to block-{name}, let
// through.
func answered(a answer, name string) bool {
	return a.out.status == http.StatusOK && strings.Contains(fmt.Sprint(a.out.body), "block-"+name) &&
		strings.Contains(fmt.Sprint(a.out.body), "answered") && !strings.Contains(fmt.Sprint(a.out.body), "isError:true")
}

// pathModes runs a test on the tools/call fast path and on mcp-go.
var pathModes = []struct {
	name string
	off  bool
}{{"fast path", false}, {"mcp-go", true}}

// TestCancelOnlyOwnRequests: in 2026-07-28, bob's notifications/cancelled
// naming the id of alice's call in flight — however he spells it — does
// not end it (her call completes, audited allow), and is answered exactly
// as a cancel naming nothing; alice's own cancel ends hers. On the fast
// path and through mcp-go alike.
func TestCancelOnlyOwnRequests(t *testing.T) {
	b := newBlocker()
	f := newFixture(t, fixtureOpts{policy: allowAll{}, wrapUpstream: b.wrap})
	// The answer to a cancel that names no request in flight.
	nothing := sendCancel(t, f, "bob", cancelBody("424242"), modernCancelHeaders)
	if nothing.Status != http.StatusAccepted {
		t.Fatalf("a cancel naming nothing: %+v", nothing)
	}
	var cancelled [2]answer
	for i, mode := range pathModes {
		t.Run(mode.name, func(t *testing.T) {
			f.srv.fastCallOff.Store(mode.off)
			defer f.srv.fastCallOff.Store(false)
			served := f.srv.fastServed.Load()
			victim := "a" + fmt.Sprint(i)
			call := startCall(t, f, "alice", "77", victim, "")
			b.Started(victim)
			for _, c := range []struct{ name, body string }{
				{"same id", cancelBody("77")},
				{"null id", `{"jsonrpc":"2.0","id":null,"method":"notifications/cancelled","params":{"requestId":77,` + modernMeta + `}}`},
				{"id as 77.0", cancelBody("77.0")},
				{"with _meta", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":77,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`},
			} {
				if got := sendCancel(t, f, "bob", c.body, modernCancelHeaders); got != nothing {
					t.Errorf("bob's cancel (%s) of alice's call is answered %+v, a cancel naming nothing %+v", c.name, got, nothing)
				}
			}
			// bob through another agent of his, and alice through another agent.
			for _, tok := range []string{"bob-fresh", "deleg"} {
				if got := sendCancel(t, f, tok, cancelBody("77"), modernCancelHeaders); got != nothing {
					t.Errorf("%s's cancel: %+v", tok, got)
				}
			}
			b.Release(victim)
			a := <-call
			if !answered(a, victim) {
				t.Fatalf("alice's call was ended by another principal's cancel: %s", a.out)
			}
			if a.rec == nil || a.rec.Decision != decAllow {
				t.Errorf("alice's call: audit record %+v, want allow", a.rec)
			}

			// Her own cancel ends hers.
			own := "own" + fmt.Sprint(i)
			call = startCall(t, f, "alice", "78", own, "")
			b.Started(own)
			if got := sendCancel(t, f, "alice", cancelBody("78"), modernCancelHeaders); got != nothing {
				t.Errorf("alice's own cancel is answered %+v, want %+v", got, nothing)
			}
			b.Gone(own)
			a = <-call
			if answered(a, own) {
				t.Fatalf("alice's cancel did not end her call: %s", a.out)
			}
			if a.rec == nil || a.rec.Decision == decAllow {
				t.Errorf("a cancelled call: audit record %+v", a.rec)
			}
			cancelled[i] = a
			if taken := f.srv.fastServed.Load() != served; taken == mode.off {
				t.Errorf("fast path taken = %v", taken)
			}
		})
	}
	// A cancelled call is answered and audited as mcp-go answers it.
	fast, slow := cancelled[0], cancelled[1]
	if fast.out.status != slow.out.status || !reflect.DeepEqual(fast.out.body, slow.out.body) {
		t.Errorf("cancelled calls answered differently:\n fast: %s\n mcp-go: %s", fast.out, slow.out)
	}
	if fast.rec != nil && slow.rec != nil && !reflect.DeepEqual(viewOf([]audit.Record{*fast.rec}), viewOf([]audit.Record{*slow.rec})) {
		t.Errorf("cancelled calls audited differently:\n fast: %+v\n mcp-go: %+v", *fast.rec, *slow.rec)
	}
	if n := f.srv.inflight.size(); n != 0 {
		t.Errorf("%d entries left in the in-flight table after every call ended", n)
	}
}

// TestCancelSameIDTwoPrincipals: alice and bob both have a call with id 5
// in flight; bob's cancel ends only his.
func TestCancelSameIDTwoPrincipals(t *testing.T) {
	b := newBlocker()
	f := newFixture(t, fixtureOpts{policy: allowAll{}, wrapUpstream: b.wrap})
	for i, mode := range pathModes {
		t.Run(mode.name, func(t *testing.T) {
			f.srv.fastCallOff.Store(mode.off)
			defer f.srv.fastCallOff.Store(false)
			alice, bob := fmt.Sprint("alice", i), fmt.Sprint("bob", i)
			// bob's call first: a table keyed by the id alone holds alice's.
			bCall := startCall(t, f, "bob", "5", bob, "")
			b.Started(bob)
			aCall := startCall(t, f, "alice", "5", alice, "")
			b.Started(alice)
			if got := sendCancel(t, f, "bob", cancelBody("5"), modernCancelHeaders); got.Status != http.StatusAccepted {
				t.Fatalf("bob's cancel: %+v", got)
			}
			gone := make(chan struct{})
			go func() { b.Gone(bob); close(gone) }()
			select {
			case <-gone:
			case a := <-aCall: // alice's call never ends before it is released, unless cancelled
				t.Fatalf("bob's cancel ended alice's call: %s", a.out)
			}
			if a := <-bCall; answered(a, bob) || a.rec == nil || a.rec.Decision == decAllow || a.rec.Subject != "bob" {
				t.Errorf("bob's cancelled call: %s, audit %+v", a.out, a.rec)
			}
			b.Release(alice)
			if a := <-aCall; !answered(a, alice) || a.rec == nil || a.rec.Decision != decAllow || a.rec.Subject != "alice" {
				t.Errorf("alice's call was ended by bob's cancel of his own: %s, audit %+v", a.out, a.rec)
			}
		})
	}
	if n := f.srv.inflight.size(); n != 0 {
		t.Errorf("%d entries left in the in-flight table", n)
	}
}

// TestCancelLegacySessionScoped: in the session era mcp-go keys its table
// by session, and a session is bound to its principal: bob's cancel in
// his own session, or without one, leaves alice's call alone; in hers he
// is refused as unknown; hers ends it.
func TestCancelLegacySessionScoped(t *testing.T) {
	b := newBlocker()
	f := newFixture(t, fixtureOpts{policy: allowAll{}, wrapUpstream: b.wrap})
	aliceSID := openLegacy(t, f, "alice", "2025-06-18")
	bobSID := openLegacy(t, f, "bob", "2025-06-18")
	legacy := func(sid string) map[string]string {
		return map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}
	}
	call := startCall(t, f, "alice", "7", "la", aliceSID)
	b.Started("la")
	if got := sendCancel(t, f, "bob", cancelBody("7"), legacy(bobSID)); got.Status != http.StatusAccepted {
		t.Errorf("bob's cancel in his session: %+v", got)
	}
	if got := sendCancel(t, f, "bob", cancelBody("7"), modernCancelHeaders); got.Status != http.StatusAccepted {
		t.Errorf("bob's 2026-07-28 cancel: %+v", got)
	}
	if got := sendCancel(t, f, "bob", cancelBody("7"), legacy(aliceSID)); got.Status != http.StatusNotFound {
		t.Errorf("bob's cancel in alice's session: %+v, want 404", got)
	}
	b.Release("la")
	if a := <-call; !answered(a, "la") || a.rec == nil || a.rec.Decision != decAllow {
		t.Fatalf("alice's call was ended by bob: %s, audit %+v", a.out, a.rec)
	}

	call = startCall(t, f, "alice", "8", "la2", aliceSID)
	b.Started("la2")
	if got := sendCancel(t, f, "alice", cancelBody("8"), legacy(aliceSID)); got.Status != http.StatusAccepted {
		t.Errorf("alice's cancel: %+v", got)
	}
	b.Gone("la2")
	if a := <-call; answered(a, "la2") || a.rec == nil || a.rec.Decision == decAllow {
		t.Errorf("alice's cancel did not end her call: %s, audit %+v", a.out, a.rec)
	}
}

// FuzzRequestKey: the key the edge gives a request id is the key mcp-go's
// handleNotification reads from a notifications/cancelled naming that id
// (so a cancel names exactly the requests mcp-go would have cancelled, of
// its own principal); the shortcuts for plain ids agree with the decoder;
// a null or absent id is no request.
func FuzzRequestKey(f *testing.F) {
	for _, seed := range []string{`77`, `77.0`, `7.7e1`, `"77"`, `-3`, `0`, `-0`, `null`, ``, `9007199254740993`, `999999999999999`,
		`1.5`, `1e400`, `"a\u0062"`, `"é"`, `"\u00e9"`, `"\ud800"`, "\"\xff\"", `true`, `{"a":1}`, `[1]`, `""`, ` 5`, `"tab\t"`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, ok := requestKey(json.RawMessage(raw))
		if slow, slowOK := decodedRequestKey(json.RawMessage(raw)); key != slow || ok != slowOK {
			t.Fatalf("requestKey(%q) = %q %v, decoded %q %v", raw, key, ok, slow, slowOK)
		}
		if !json.Valid([]byte(raw)) {
			return
		}
		var n mcp.JSONRPCNotification
		if json.Unmarshal([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`+raw+`}}`), &n) != nil {
			return
		}
		id := n.Params.AdditionalFields["requestId"]
		if id == nil {
			if ok {
				t.Fatalf("%q is a request id, but no requestId for mcp-go", raw)
			}
			return
		}
		if want := mcp.NewRequestId(id).String(); !ok || key != want {
			t.Fatalf("request id %q keyed %q (%v), mcp-go's cancel names %q", raw, key, ok, want)
		}
	})
}

func TestRequestKeyExamples(t *testing.T) {
	k77, _ := requestKey(json.RawMessage(`77`))
	k770, _ := requestKey(json.RawMessage(`77.0`))
	ks, _ := requestKey(json.RawMessage(`"77"`))
	if k77 != "int64:77" || k770 != k77 || ks != "string:77" {
		t.Errorf("77 keyed %q, 77.0 %q, \"77\" %q", k77, k770, ks)
	}
	for _, raw := range []string{`null`, ``} {
		if k, ok := requestKey(json.RawMessage(raw)); ok {
			t.Errorf("%q is not a request, keyed %q", raw, k)
		}
	}
}

// TestCancelListenStreamScoped: a 2026-07-28 subscriptions/listen stream is
// ended by its own principal's cancel, not by another's naming its id.
func TestCancelListenStreamScoped(t *testing.T) {
	f := newFixture(t, fixtureOpts{policy: allowAll{}})
	body := `{"jsonrpc":"2.0","id":9,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + modernMeta + `}}`
	req, err := http.NewRequest(http.MethodPost, f.url+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Authorization": "Bearer alice", "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "subscriptions/listen"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	// next returns the data of the stream's next event, "" at its end.
	next := func() string {
		for events.Scan() {
			if d, ok := strings.CutPrefix(events.Text(), "data: "); ok {
				return d
			}
		}
		return ""
	}
	if ack := next(); !strings.Contains(ack, "subscriptions/acknowledged") {
		t.Fatalf("listen: %d, first event %q", resp.StatusCode, ack)
	}
	if got := sendCancel(t, f, "bob", cancelBody("9"), modernCancelHeaders); got.Status != http.StatusAccepted {
		t.Fatalf("bob's cancel: %+v", got)
	}
	f.srv.prod.mcp.SendNotificationToAllClients(string(mcp.MethodNotificationToolsListChanged), nil)
	if ev := next(); !strings.Contains(ev, "list_changed") {
		t.Fatalf("alice's stream after bob's cancel of id 9: next event %q, want tools/list_changed (still open)", ev)
	}
	if got := sendCancel(t, f, "alice", cancelBody("9"), modernCancelHeaders); got.Status != http.StatusAccepted {
		t.Fatalf("alice's cancel: %+v", got)
	}
	for ev := next(); ev != ""; ev = next() {
		if strings.Contains(ev, "list_changed") {
			t.Fatalf("alice's stream still open after her cancel: %q", ev)
		}
	}
	if n := f.srv.inflight.size(); n != 0 {
		t.Errorf("%d entries left in the in-flight table", n)
	}
}
