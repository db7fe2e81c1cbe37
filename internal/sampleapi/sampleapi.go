package sampleapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 1 << 20

// API is one instance of the sample CRM with its own copy of the data.
// Customers and orders are read-only; tickets and refunds change under mu.
// An API is safe for concurrent use.
type API struct {
	customers map[string]customer
	orders    map[string]order
	now       func() time.Time

	// branch and doc are set for the branch variant (NewBranch): its
	// name, and the document that adds its operation.
	branch string
	doc    []byte

	mu         sync.Mutex
	tickets    map[string]*ticket
	refunds    map[string]*refund
	nextTicket int
	nextRefund int
}

// New returns an API holding a fresh copy of the deterministic sample data.
func New() *API {
	a := &API{
		customers:  map[string]customer{},
		orders:     map[string]order{},
		tickets:    map[string]*ticket{},
		refunds:    map[string]*refund{},
		nextTicket: 3,
		nextRefund: 1,
		now:        time.Now,
		doc:        openAPIDoc,
	}
	for _, c := range seedCustomers() {
		a.customers[c.CustomerID] = c
	}
	for _, o := range seedOrders() {
		a.orders[o.OrderID] = o
	}
	for _, t := range seedTickets() {
		a.tickets[t.TicketID] = &t
	}
	return a
}

// httpError is an answer in FastAPI's error shape: {"detail": detail}.
type httpError struct {
	status int
	detail any    // a string, or []validationError for 422
	allow  string // the Allow header of a 405
}

func (e *httpError) Error() string {
	if s, ok := e.detail.(string); ok {
		return fmt.Sprintf("status %d: %s", e.status, s)
	}
	return fmt.Sprintf("status %d", e.status)
}

func notFound(what string) error {
	return &httpError{status: http.StatusNotFound, detail: what + " not found"}
}

// handlerFunc is a handler that returns its answer: a status, a value to
// encode as JSON (nil for no body) or an error that serve turns into FastAPI's
// error shape.
type handlerFunc func(r *http.Request) (status int, body any, err error)

// route is one served operation; routes is the single list both the mux and
// the tests walk.
type route struct {
	method, path, operationID string
	h                         func(a *API) handlerFunc
}

var routes = []route{
	{"GET", "/health", "health", func(a *API) handlerFunc { return a.health }},
	{"GET", "/customers", "list_customers", func(a *API) handlerFunc { return a.listCustomers }},
	{"GET", "/customers/{customer_id}", "get_customer", func(a *API) handlerFunc { return a.getCustomer }},
	{"GET", "/customers/{customer_id}/orders", "list_customer_orders", func(a *API) handlerFunc { return a.listCustomerOrders }},
	{"GET", "/tickets", "list_tickets", func(a *API) handlerFunc { return a.listTickets }},
	{"POST", "/tickets", "create_ticket", func(a *API) handlerFunc { return a.createTicket }},
	{"GET", "/tickets/{ticket_id}", "get_ticket", func(a *API) handlerFunc { return a.getTicket }},
	{"PATCH", "/tickets/{ticket_id}", "update_ticket", func(a *API) handlerFunc { return a.updateTicket }},
	{"DELETE", "/tickets/{ticket_id}", "delete_ticket", func(a *API) handlerFunc { return a.deleteTicket }},
	{"GET", "/orders/{order_id}", "get_order", func(a *API) handlerFunc { return a.getOrder }},
	{"GET", "/refunds", "list_refunds", func(a *API) handlerFunc { return a.listRefunds }},
	{"POST", "/refunds", "issue_refund", func(a *API) handlerFunc { return a.issueRefund }},
	{"GET", "/whoami", "whoami", func(a *API) handlerFunc { return a.whoami }},
}

// Handler returns the HTTP handler serving every operation of the OpenAPI
// document, the document itself at GET /openapi.json, and FastAPI-shaped
// 404/405 answers for anything else.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	var paths []string
	served := routes
	if a.branch != "" {
		served = append(slices.Clone(routes), loyaltyRoute)
	}
	for _, rt := range served {
		mux.Handle(rt.method+" "+rt.path, serve(rt.h(a)))
		if _, seen := allowed[rt.path]; !seen {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(a.doc)
	})
	allowed["/openapi.json"] = []string{"GET"}
	paths = append(paths, "/openapi.json")
	// A method-less pattern is less specific than "GET /x", so it only
	// catches the methods the path does not serve.
	for _, p := range paths {
		methods := slices.Clone(allowed[p])
		if slices.Contains(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		allow := strings.Join(methods, ", ")
		mux.Handle(p, serve(func(*http.Request) (int, any, error) {
			return 0, nil, &httpError{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed", allow: allow}
		}))
	}
	mux.Handle("/", serve(func(*http.Request) (int, any, error) {
		return 0, nil, &httpError{status: http.StatusNotFound, detail: "Not Found"}
	}))
	return mux
}

// serve adapts a handlerFunc: it encodes the answer as JSON, or the error in
// FastAPI's shape. An error that is not an httpError is a bare 500 that does
// not reveal its cause, as FastAPI does.
func serve(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		status, body, err := h(r)
		if err != nil {
			he, ok := errors.AsType[*httpError](err)
			if !ok {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("Internal Server Error"))
				return
			}
			if he.allow != "" {
				w.Header().Set("Allow", he.allow)
			}
			status, body = he.status, map[string]any{"detail": he.detail}
		}
		if body == nil {
			w.WriteHeader(status)
			return
		}
		buf, err := json.Marshal(body)
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("Internal Server Error"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
		w.WriteHeader(status)
		_, _ = w.Write(buf)
	})
}

// queryEnum reads an optional query parameter restricted to values.
func queryEnum(v *validator, r *http.Request, name string, values []string) string {
	q := r.URL.Query()
	if !q.Has(name) {
		return ""
	}
	s := q.Get(name)
	if !isOneOf(s, values) {
		v.enumError([]any{"query", name}, s, values)
		return ""
	}
	return s
}

func (a *API) health(*http.Request) (int, any, error) {
	return http.StatusOK, health{Status: "ok"}, nil
}

func (a *API) listCustomers(r *http.Request) (int, any, error) {
	var v validator
	tenant := queryEnum(&v, r, "tenant_id", tenants)
	limit := 50
	q := r.URL.Query()
	if q.Has("limit") {
		s := q.Get("limit")
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			v.add("int_parsing", []any{"query", "limit"}, "Input should be a valid integer, unable to parse string as an integer", s, nil)
		case n < 1:
			v.add("greater_than_equal", []any{"query", "limit"}, "Input should be greater than or equal to 1", s, map[string]any{"ge": 1})
		case n > 100:
			v.add("less_than_equal", []any{"query", "limit"}, "Input should be less than or equal to 100", s, map[string]any{"le": 100})
		default:
			limit = n
		}
	}
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	needle := strings.ToLower(q.Get("q"))
	out := []customer{}
	for _, c := range a.sortedCustomers() {
		if (tenant == "" || c.TenantID == tenant) && strings.Contains(strings.ToLower(c.Name), needle) {
			out = append(out, c)
		}
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return http.StatusOK, out, nil
}

func (a *API) sortedCustomers() []customer {
	out := make([]customer, 0, len(a.customers))
	for _, c := range a.customers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y customer) int { return cmp.Compare(x.CustomerID, y.CustomerID) })
	return out
}

func (a *API) getCustomer(r *http.Request) (int, any, error) {
	c, ok := a.customers[r.PathValue("customer_id")]
	if !ok {
		return 0, nil, notFound("customer")
	}
	return http.StatusOK, c, nil
}

func (a *API) listCustomerOrders(r *http.Request) (int, any, error) {
	id := r.PathValue("customer_id")
	if _, ok := a.customers[id]; !ok {
		return 0, nil, notFound("customer")
	}
	q := r.URL.Query()
	since, skus := q.Get("since"), q["sku"]
	out := []order{}
	for _, o := range a.orders {
		if o.CustomerID != id || (since != "" && o.CreatedAt < since) {
			continue
		}
		if len(skus) > 0 && !slices.ContainsFunc(o.Lines, func(l orderLine) bool { return slices.Contains(skus, l.SKU) }) {
			continue
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(x, y order) int {
		return cmp.Or(cmp.Compare(x.CreatedAt, y.CreatedAt), cmp.Compare(x.OrderID, y.OrderID))
	})
	return http.StatusOK, out, nil
}

func (a *API) getOrder(r *http.Request) (int, any, error) {
	o, ok := a.orders[r.PathValue("order_id")]
	if !ok {
		return 0, nil, notFound("order")
	}
	return http.StatusOK, o, nil
}

// idNumber orders ids such as t-2 and t-10 (or r-2, r-10) numerically.
func idNumber(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(id, "t-"), "r-"))
	return n
}

func (a *API) listTickets(r *http.Request) (int, any, error) {
	var v validator
	tenant := queryEnum(&v, r, "tenant_id", tenants)
	status := queryEnum(&v, r, "status", ticketStatuses)
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	out := []ticket{}
	a.mu.Lock()
	for _, t := range a.tickets {
		if (tenant == "" || t.TenantID == tenant) && (status == "" || t.Status == status) {
			out = append(out, t.clone())
		}
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y ticket) int { return cmp.Compare(idNumber(x.TicketID), idNumber(y.TicketID)) })
	return http.StatusOK, out, nil
}

func (a *API) getTicket(r *http.Request) (int, any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tickets[r.PathValue("ticket_id")]
	if !ok {
		return 0, nil, notFound("ticket")
	}
	return http.StatusOK, t.clone(), nil
}

// ticketCreate is the validated body of POST /tickets.
type ticketCreate struct {
	TenantID   string // empty: the customer's tenant
	CustomerID string
	Subject    string
	Body       string
	Priority   string
}

// parseTicketCreate validates a TicketCreate body, collecting every problem.
func parseTicketCreate(r *http.Request) (ticketCreate, error) {
	var v validator
	obj, ok, err := v.object(r.Body)
	if err != nil {
		return ticketCreate{}, err
	}
	if !ok {
		return ticketCreate{}, v.err()
	}
	loc := []any{"body"}
	tenant := v.enumField(obj, loc, "tenant_id", false, tenants)
	cust := v.strField(obj, loc, "customer_id", true, 0, 0)
	subject := v.strField(obj, loc, "subject", true, 1, 200)
	body := v.strField(obj, loc, "body", true, 1, 5000)
	prio := v.enumField(obj, loc, "priority", false, priorities)
	if err := v.err(); err != nil {
		return ticketCreate{}, err
	}
	out := ticketCreate{CustomerID: *cust, Subject: *subject, Body: *body, Priority: "normal"}
	if tenant != nil {
		out.TenantID = *tenant
	}
	if prio != nil {
		out.Priority = *prio
	}
	return out, nil
}

func (a *API) createTicket(r *http.Request) (int, any, error) {
	in, err := parseTicketCreate(r)
	if err != nil {
		return 0, nil, err
	}
	c, ok := a.customers[in.CustomerID]
	if !ok || (in.TenantID != "" && in.TenantID != c.TenantID) {
		return 0, nil, &httpError{status: http.StatusNotFound, detail: "customer not found in tenant"}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := &ticket{
		TicketID:   "t-" + strconv.Itoa(a.nextTicket),
		TenantID:   c.TenantID,
		CustomerID: c.CustomerID,
		Subject:    in.Subject,
		Status:     "open",
		Priority:   in.Priority,
		Thread:     []ticketMessage{{Author: c.Email, Body: in.Body, Replies: []ticketMessage{}}},
	}
	a.nextTicket++
	a.tickets[t.TicketID] = t
	return http.StatusCreated, t.clone(), nil
}

// ticketUpdate is the validated body of PATCH /tickets/{ticket_id}; nil
// members are left unchanged.
type ticketUpdate struct {
	Status, Priority, Assignee *string
	Reply                      *ticketMessage
}

// parseTicketUpdate validates a TicketUpdate body, collecting every problem.
func parseTicketUpdate(r *http.Request) (ticketUpdate, error) {
	var v validator
	obj, ok, err := v.object(r.Body)
	if err != nil {
		return ticketUpdate{}, err
	}
	if !ok {
		return ticketUpdate{}, v.err()
	}
	loc := []any{"body"}
	out := ticketUpdate{
		Status:   v.enumField(obj, loc, "status", false, ticketStatuses),
		Priority: v.enumField(obj, loc, "priority", false, priorities),
		Assignee: v.strField(obj, loc, "assignee", false, 0, 320),
		Reply:    v.messageField(obj, loc, "reply"),
	}
	if err := v.err(); err != nil {
		return ticketUpdate{}, err
	}
	return out, nil
}

func (a *API) updateTicket(r *http.Request) (int, any, error) {
	// FastAPI validates the body before the handler looks the ticket up.
	in, err := parseTicketUpdate(r)
	if err != nil {
		return 0, nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tickets[r.PathValue("ticket_id")]
	if !ok {
		return 0, nil, notFound("ticket")
	}
	if in.Status != nil {
		t.Status = *in.Status
	}
	if in.Priority != nil {
		t.Priority = *in.Priority
	}
	if in.Assignee != nil {
		t.Assignee = in.Assignee
	}
	if in.Reply != nil {
		t.Thread = append(t.Thread, *in.Reply)
	}
	return http.StatusOK, t.clone(), nil
}

func (a *API) deleteTicket(r *http.Request) (int, any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := r.PathValue("ticket_id")
	if _, ok := a.tickets[id]; !ok {
		return 0, nil, notFound("ticket")
	}
	delete(a.tickets, id)
	return http.StatusNoContent, nil, nil
}

func (a *API) listRefunds(r *http.Request) (int, any, error) {
	var v validator
	tenant := queryEnum(&v, r, "tenant_id", tenants)
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	out := []refund{}
	a.mu.Lock()
	for _, rf := range a.refunds {
		if tenant == "" || rf.TenantID == tenant {
			out = append(out, *rf)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y refund) int { return cmp.Compare(idNumber(x.RefundID), idNumber(y.RefundID)) })
	return http.StatusOK, out, nil
}

// refundCreate is the validated body of POST /refunds.
type refundCreate struct {
	TenantID, OrderID string
	AmountCents       int
	Reason            string
	Comment           *string
}

// parseRefundCreate validates a RefundCreate body, collecting every problem.
func parseRefundCreate(r *http.Request) (refundCreate, error) {
	var v validator
	obj, ok, err := v.object(r.Body)
	if err != nil {
		return refundCreate{}, err
	}
	if !ok {
		return refundCreate{}, v.err()
	}
	loc := []any{"body"}
	zero := int64(0)
	tenant := v.enumField(obj, loc, "tenant_id", true, tenants)
	orderID := v.strField(obj, loc, "order_id", true, 0, 0)
	amount := v.intField(obj, loc, "amount_cents", true, &zero)
	reason := v.enumField(obj, loc, "reason", true, refundReasons)
	comment := v.strField(obj, loc, "comment", false, 0, 1000)
	if err := v.err(); err != nil {
		return refundCreate{}, err
	}
	return refundCreate{TenantID: *tenant, OrderID: *orderID, AmountCents: *amount, Reason: *reason, Comment: comment}, nil
}

func (a *API) issueRefund(r *http.Request) (int, any, error) {
	in, err := parseRefundCreate(r)
	if err != nil {
		return 0, nil, err
	}
	o, ok := a.orders[in.OrderID]
	if !ok || o.TenantID != in.TenantID {
		return 0, nil, &httpError{status: http.StatusNotFound, detail: "order not found in tenant"}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	already := 0
	for _, rf := range a.refunds {
		if rf.OrderID == o.OrderID {
			already += rf.AmountCents
		}
	}
	if already+in.AmountCents > o.TotalCents {
		return 0, nil, &httpError{status: http.StatusConflict, detail: "refund exceeds order total"}
	}
	rf := &refund{
		RefundID:    "r-" + strconv.Itoa(a.nextRefund),
		TenantID:    o.TenantID,
		OrderID:     o.OrderID,
		CustomerID:  o.CustomerID,
		AmountCents: in.AmountCents,
		Reason:      in.Reason,
		Comment:     in.Comment,
		CardNumber:  a.customers[o.CustomerID].CardNumber,
		CreatedAt:   a.now().UTC().Truncate(time.Second).Format(time.RFC3339),
	}
	a.nextRefund++
	a.refunds[rf.RefundID] = rf
	return http.StatusCreated, *rf, nil
}

// Start serves a fresh API on addr (for example "127.0.0.1:0") and returns
// its base URL ("http://127.0.0.1:PORT") and a function that shuts it down
// gracefully. addr must be a loopback address: the sample data is demo
// material. Every request but GET /openapi.json and /health must carry a
// gateway assertion that v verifies (401 otherwise), as a real upstream
// behind Harness does. The server also closes when ctx ends.
func Start(ctx context.Context, addr string, v Verification) (url string, stop func(context.Context) error, err error) {
	return start(ctx, addr, v, New())
}

// StartBranch is Start for the branch variant (NewBranch): the sample API
// as branch's preview deployment serves it.
func StartBranch(ctx context.Context, addr, branch string, v Verification) (url string, stop func(context.Context) error, err error) {
	a, err := NewBranch(branch)
	if err != nil {
		return "", nil, err
	}
	return start(ctx, addr, v, a)
}

func start(ctx context.Context, addr string, v Verification, a *API) (url string, stop func(context.Context) error, err error) {
	handler, err := v.guard(ctx, a.Handler())
	if err != nil {
		return "", nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("sample api address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("sample api address %q: %w", addr, errNotLoopback)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen for sample api: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Shutdown/Close
	}()
	unhook := context.AfterFunc(ctx, func() { _ = srv.Close() })
	stop = func(sctx context.Context) error {
		unhook()
		err := srv.Shutdown(sctx)
		if err != nil {
			_ = srv.Close()
		}
		<-done
		if err != nil {
			return fmt.Errorf("shut down sample api: %w", err)
		}
		return nil
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// errNotLoopback refuses to expose the sample API beyond the machine.
var errNotLoopback = errors.New("not a loopback address")
