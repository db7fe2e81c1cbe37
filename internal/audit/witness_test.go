package audit

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPWitnessErrorNamesNoQuery: an HTTP witness's URL may carry a
// credential in its query, which Name leaves out; a failed POST's error
// (logged by the publisher) must leave it out too.
func TestHTTPWitnessErrorNamesNoQuery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the POST fails to connect
	w := &HTTPWitness{URL: "http://" + addr + "/checkpoint?token=w1tn3ssT0k3n", Client: &http.Client{Timeout: 5 * time.Second}}
	if name := w.Name(); strings.Contains(name, "w1tn3ssT0k3n") {
		t.Fatalf("Name %q carries the query", name)
	}
	err = w.Publish(context.Background(), testOrigin, []byte("checkpoint\n"))
	if err == nil {
		t.Fatal("POST to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "witness http://"+addr+"/checkpoint:") {
		t.Fatalf("error does not name the witness: %v", err)
	}
	if strings.Contains(err.Error(), "w1tn3ssT0k3n") {
		t.Fatalf("error carries the URL's query: %v", err)
	}
}
