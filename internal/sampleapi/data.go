package sampleapi

import "slices"

// Tenants, ticket states, priorities and refund reasons, in the order the
// OpenAPI document lists them.
var (
	tenants        = []string{"acme", "globex"}
	ticketStatuses = []string{"open", "pending", "closed"}
	priorities     = []string{"low", "normal", "high"}
	refundReasons  = []string{"damaged", "late", "duplicate", "other"}
)

type address struct {
	Street   string `json:"street"`
	City     string `json:"city"`
	Postcode string `json:"postcode"`
	Country  string `json:"country"`
}

type customer struct {
	CustomerID string  `json:"customer_id"`
	TenantID   string  `json:"tenant_id"`
	Name       string  `json:"name"`
	Email      string  `json:"email"`
	Phone      *string `json:"phone"`
	CardNumber string  `json:"card_number"`
	Address    address `json:"address"`
	Notes      string  `json:"notes"`
}

type orderLine struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int    `json:"unit_price_cents"`
}

type order struct {
	OrderID     string      `json:"order_id"`
	OrderNumber string      `json:"order_number"`
	TenantID    string      `json:"tenant_id"`
	CustomerID  string      `json:"customer_id"`
	CreatedAt   string      `json:"created_at"`
	TotalCents  int         `json:"total_cents"`
	IBAN        *string     `json:"iban"`
	Lines       []orderLine `json:"lines"`
}

type ticketMessage struct {
	Author  string          `json:"author"`
	Body    string          `json:"body"`
	Replies []ticketMessage `json:"replies"`
}

// clone returns a deep copy of m, with a non-nil Replies slice at every level.
func (m ticketMessage) clone() ticketMessage {
	out := ticketMessage{Author: m.Author, Body: m.Body, Replies: make([]ticketMessage, 0, len(m.Replies))}
	for _, r := range m.Replies {
		out.Replies = append(out.Replies, r.clone())
	}
	return out
}

type ticket struct {
	TicketID   string          `json:"ticket_id"`
	TenantID   string          `json:"tenant_id"`
	CustomerID string          `json:"customer_id"`
	Subject    string          `json:"subject"`
	Status     string          `json:"status"`
	Priority   string          `json:"priority"`
	Assignee   *string         `json:"assignee"`
	Notes      string          `json:"notes"`
	Thread     []ticketMessage `json:"thread"`
}

// clone returns a deep copy of t, safe to encode after the lock is released.
func (t *ticket) clone() ticket {
	out := *t
	if t.Assignee != nil {
		a := *t.Assignee
		out.Assignee = &a
	}
	out.Thread = make([]ticketMessage, 0, len(t.Thread))
	for _, m := range t.Thread {
		out.Thread = append(out.Thread, m.clone())
	}
	return out
}

type refund struct {
	RefundID    string  `json:"refund_id"`
	TenantID    string  `json:"tenant_id"`
	OrderID     string  `json:"order_id"`
	CustomerID  string  `json:"customer_id"`
	AmountCents int     `json:"amount_cents"`
	Reason      string  `json:"reason"`
	Comment     *string `json:"comment"`
	CardNumber  string  `json:"card_number"`
	CreatedAt   string  `json:"created_at"`
}

type health struct {
	Status string `json:"status"`
}

func ptr[T any](v T) *T { return &v }

// Fake secrets: "sk_live_" followed by exactly 24 alphanumerics, spelled so
// that nobody mistakes them for real keys.
const (
	fakeSecretAcme   = "sk_live_DEMOFAKEacme000000000000"
	fakeSecretTicket = "sk_live_DEMOFAKEtkt1111111111111"
)

// seedCustomers returns the fixed customers, in id order. The card numbers are
// the well-known Luhn-valid test numbers of the card networks.
func seedCustomers() []customer {
	return []customer{
		{
			CustomerID: "c-1", TenantID: "acme", Name: "Alice Anders",
			Email: "alice@acme.example", Phone: ptr("+1-555-0101"),
			CardNumber: "4111 1111 1111 1111",
			Address:    address{Street: "1 Main St", City: "Springfield", Postcode: "12345", Country: "US"},
			Notes:      "VIP. Legacy integration key " + fakeSecretAcme + " (rotate!)",
		},
		{
			CustomerID: "c-2", TenantID: "acme", Name: "Bob Brown",
			Email: "bob@acme.example", CardNumber: "5555 5555 5555 4444",
			Address: address{Street: "2 Oak Ave", City: "Springfield", Postcode: "12346", Country: "US"},
			Notes:   "Prefers e-mail contact.",
		},
		{
			CustomerID: "c-3", TenantID: "globex", Name: "Carol Chen",
			Email: "carol@globex.example", Phone: ptr("+1-555-0103"),
			CardNumber: "4012 8888 8888 1881",
			Address:    address{Street: "3 Elm Rd", City: "Cypress Creek", Postcode: "54321", Country: "US"},
			Notes:      "Asked about SSN 078-05-1120 on file; do not share.",
		},
		{
			CustomerID: "c-4", TenantID: "globex", Name: "Dan Diaz",
			Email: "dan@globex.example", CardNumber: "3782 822463 10005",
			Address: address{Street: "4 Pine Ln", City: "Cypress Creek", Postcode: "54322", Country: "CA"},
			Notes:   "",
		},
	}
}

// seedOrders returns the fixed orders. Order numbers are 16 digits that fail
// the Luhn check: a redactor that masks them as card numbers is wrong.
func seedOrders() []order {
	return []order{
		{
			OrderID: "o-100", OrderNumber: "2026010500001000", TenantID: "acme", CustomerID: "c-1",
			CreatedAt: "2026-01-05T10:00:00Z", TotalCents: 4998, IBAN: ptr("DE89370400440532013000"),
			Lines: []orderLine{{SKU: "WIDGET", Quantity: 2, UnitPriceCents: 2499}},
		},
		{
			OrderID: "o-101", OrderNumber: "2026021100001010", TenantID: "acme", CustomerID: "c-1",
			CreatedAt: "2026-02-11T09:30:00Z", TotalCents: 1299,
			Lines: []orderLine{{SKU: "GADGET", Quantity: 1, UnitPriceCents: 1299}},
		},
		{
			OrderID: "o-102", OrderNumber: "2026030100001020", TenantID: "acme", CustomerID: "c-2",
			CreatedAt: "2026-03-01T15:45:00Z", TotalCents: 999,
			Lines: []orderLine{{SKU: "CABLE", Quantity: 1, UnitPriceCents: 999}},
		},
		{
			OrderID: "o-200", OrderNumber: "2026012000002000", TenantID: "globex", CustomerID: "c-3",
			CreatedAt: "2026-01-20T12:00:00Z", TotalCents: 15000, IBAN: ptr("GB82WEST12345698765432"),
			Lines: []orderLine{{SKU: "ROCKET", Quantity: 1, UnitPriceCents: 15000}},
		},
	}
}

// seedTickets returns the fixed tickets.
func seedTickets() []ticket {
	return []ticket{
		{
			TicketID: "t-1", TenantID: "acme", CustomerID: "c-1",
			Subject: "Widget arrived broken", Status: "open", Priority: "high",
			Assignee: ptr("support1@acme.example"),
			Notes:    "Customer pasted token " + fakeSecretTicket + " in chat",
			Thread: []ticketMessage{{
				Author: "alice@acme.example", Body: "One widget is cracked.",
				Replies: []ticketMessage{{Author: "support1@acme.example", Body: "Sorry! Sending a replacement.", Replies: []ticketMessage{}}},
			}},
		},
		{
			TicketID: "t-2", TenantID: "globex", CustomerID: "c-3",
			Subject: "Invoice question", Status: "pending", Priority: "normal",
			Thread: []ticketMessage{{
				Author: "carol@globex.example", Body: "Card 4012 8888 8888 1881 charged twice?", Replies: []ticketMessage{},
			}},
		},
	}
}

// enumList renders allowed values the way pydantic does in its messages:
// 'a', 'b' or 'c'.
func enumList(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = "'" + v + "'"
	}
	if len(quoted) == 1 {
		return quoted[0]
	}
	out := ""
	for i, q := range quoted[:len(quoted)-1] {
		if i > 0 {
			out += ", "
		}
		out += q
	}
	return out + " or " + quoted[len(quoted)-1]
}

func isOneOf(v string, values []string) bool { return slices.Contains(values, v) }
