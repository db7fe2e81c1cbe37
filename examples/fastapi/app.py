"""Harness example CRM: a small multi-tenant FastAPI service.

It is the upstream the Harness gateway turns into MCP tools. Data lives in
memory and is rebuilt identically at every start, so tests can rely on it.
Records carry ``tenant_id`` (``acme`` or ``globex``) and some sensitive-looking
test data (Luhn-valid test card numbers, e-mail addresses, fake secrets in
``notes``) so that the gateway's redaction has something to redact.

Run it with Debian's packages::

    /usr/bin/python3 -m uvicorn app:app --app-dir examples/fastapi --port 8000

Behind the gateway, set ``HARNESS_JWKS_URL`` (and ``HARNESS_ISSUER``) so that
the gateway's identity assertion is verified: see ``harness_identity.py``.

``HARNESS_SAMPLE_BRANCH=<branch>`` runs the service as a branch's preview
deployment would: it differs from production in one endpoint, the branch's new
``GET /customers/{customer_id}/loyalty`` (operation ``get_customer_loyalty``),
which names the branch in its answer. Preview environments use it
(docs/previews.md).
"""

from __future__ import annotations

import copy
import os
from datetime import datetime, timezone
from enum import Enum
from typing import Dict, List, Optional

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from harness_identity import Caller, harness_caller, verification_enabled

app = FastAPI(
    title="Harness example CRM",
    version="1.0.0",
    description="A small multi-tenant CRM used to demonstrate the Harness gateway.",
)

TENANTS = ("acme", "globex")


class Tenant(str, Enum):
    """The tenants this service knows."""

    acme = "acme"
    globex = "globex"


class TicketStatus(str, Enum):
    """Lifecycle of a support ticket."""

    open = "open"
    pending = "pending"
    closed = "closed"


class Priority(str, Enum):
    """How urgent a ticket is."""

    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class RefundReason(str, Enum):
    """Why money goes back to a customer."""

    damaged = "damaged"
    late = "late"
    duplicate = "duplicate"
    other = "other"


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str
    postcode: str
    country: str = Field("US", description="ISO 3166-1 alpha-2 country code")


class Customer(BaseModel):
    """A customer of one tenant."""

    customer_id: str
    tenant_id: Tenant
    name: str
    email: str
    phone: Optional[str] = None
    card_number: str = Field(..., description="Payment card on file (test data)")
    address: Address
    notes: str = ""


class OrderLine(BaseModel):
    """One line of an order."""

    sku: str
    quantity: int = Field(..., ge=1)
    unit_price_cents: int = Field(..., ge=0)


class Order(BaseModel):
    """An order placed by a customer."""

    order_id: str
    tenant_id: Tenant
    customer_id: str
    created_at: str
    total_cents: int
    iban: Optional[str] = None
    lines: List[OrderLine]


class TicketMessage(BaseModel):
    """A message in a ticket thread; replies nest recursively."""

    author: str = Field(..., description="Who wrote the message")
    body: str
    replies: List["TicketMessage"] = Field(default_factory=list)


TicketMessage.update_forward_refs()


class TicketCreate(BaseModel):
    """The body of a new ticket."""

    tenant_id: Tenant
    customer_id: str
    subject: str = Field(..., min_length=1, max_length=200)
    priority: Priority = Priority.normal
    thread: List[TicketMessage] = Field(default_factory=list, description="Initial messages")


class TicketUpdate(BaseModel):
    """Fields of a ticket that may change; all optional."""

    status: Optional[TicketStatus] = None
    priority: Optional[Priority] = None
    assignee: Optional[str] = Field(None, description="E-mail of the agent handling it")
    reply: Optional[TicketMessage] = None


class Ticket(BaseModel):
    """A support ticket."""

    ticket_id: str
    tenant_id: Tenant
    customer_id: str
    subject: str
    status: TicketStatus
    priority: Priority
    assignee: Optional[str] = None
    notes: str = ""
    thread: List[TicketMessage] = Field(default_factory=list)
    created_by: Optional[str] = Field(None, description="The human who opened it, as verified from the gateway's assertion")
    via: Optional[str] = Field(None, description="The agent that opened it on the human's behalf")


class RefundCreate(BaseModel):
    """A refund request."""

    tenant_id: Tenant
    order_id: str
    amount_cents: int = Field(..., gt=0, description="Amount to refund, in cents")
    reason: RefundReason
    comment: Optional[str] = None


class Refund(BaseModel):
    """An issued refund."""

    refund_id: str
    tenant_id: Tenant
    order_id: str
    customer_id: str
    amount_cents: int
    reason: RefundReason
    comment: Optional[str] = None
    card_number: str
    created_at: str


class Health(BaseModel):
    """Liveness answer."""

    status: str


class WhoAmI(BaseModel):
    """What identity this service received from the gateway."""

    authorization_present: bool
    authorization_scheme: Optional[str] = None
    assertion_claims: Optional[Dict[str, object]] = None
    traceparent: Optional[str] = None
    headers: Dict[str, str]
    verification: str = Field("off", description="on: the assertion was verified against the gateway's JWKS; "
                                                 "off: HARNESS_JWKS_URL is unset and nothing below is verified")
    human: Optional[str] = Field(None, description="The verified human (sub)")
    agent: Optional[str] = Field(None, description="The verified agent acting for the human (act.sub)")
    actors: List[str] = Field(default_factory=list, description="The verified actor chain, current agent first")
    roles: List[str] = Field(default_factory=list, description="The human's verified roles")
    email: Optional[str] = None
    delegation_id: Optional[str] = Field(None, description="The delegation the agent used, if any")
    scopes: List[str] = Field(default_factory=list, description="The scopes of that delegation")


def _seed() -> dict:
    """Build the deterministic data set."""
    customers = [
        Customer(
            customer_id="c-1", tenant_id=Tenant.acme, name="Alice Anders",
            email="alice@acme.example", phone="+1-555-0101",
            card_number="4111 1111 1111 1111",
            address=Address(street="1 Main St", city="Springfield", postcode="12345"),
            notes="VIP. Legacy integration key sk_live_51HxAcmeFakeKey0000000000 (rotate!)",
        ),
        Customer(
            customer_id="c-2", tenant_id=Tenant.acme, name="Bob Brown",
            email="bob@acme.example", card_number="5555 5555 5555 4444",
            address=Address(street="2 Oak Ave", city="Springfield", postcode="12346"),
            notes="Prefers e-mail contact.",
        ),
        Customer(
            customer_id="c-3", tenant_id=Tenant.globex, name="Carol Chen",
            email="carol@globex.example", phone="+1-555-0103",
            card_number="4012 8888 8888 1881",
            address=Address(street="3 Elm Rd", city="Cypress Creek", postcode="54321"),
            notes="Asked about SSN 078-05-1120 on file; do not share.",
        ),
        Customer(
            customer_id="c-4", tenant_id=Tenant.globex, name="Dan Diaz",
            email="dan@globex.example", card_number="3782 822463 10005",
            address=Address(street="4 Pine Ln", city="Cypress Creek", postcode="54322", country="CA"),
            notes="",
        ),
    ]
    orders = [
        Order(order_id="o-100", tenant_id=Tenant.acme, customer_id="c-1",
              created_at="2026-01-05T10:00:00Z", total_cents=4998,
              iban="DE89370400440532013000",
              lines=[OrderLine(sku="WIDGET", quantity=2, unit_price_cents=2499)]),
        Order(order_id="o-101", tenant_id=Tenant.acme, customer_id="c-1",
              created_at="2026-02-11T09:30:00Z", total_cents=1299,
              lines=[OrderLine(sku="GADGET", quantity=1, unit_price_cents=1299)]),
        Order(order_id="o-102", tenant_id=Tenant.acme, customer_id="c-2",
              created_at="2026-03-01T15:45:00Z", total_cents=999,
              lines=[OrderLine(sku="CABLE", quantity=1, unit_price_cents=999)]),
        Order(order_id="o-200", tenant_id=Tenant.globex, customer_id="c-3",
              created_at="2026-01-20T12:00:00Z", total_cents=15000,
              iban="GB82WEST12345698765432",
              lines=[OrderLine(sku="ROCKET", quantity=1, unit_price_cents=15000)]),
    ]
    tickets = [
        Ticket(ticket_id="t-1", tenant_id=Tenant.acme, customer_id="c-1",
               subject="Widget arrived broken", status=TicketStatus.open,
               priority=Priority.high, assignee="support1@acme.example",
               notes="Customer pasted token sk_live_51HxTicketFake1111111111 in chat",
               thread=[TicketMessage(author="alice@acme.example", body="One widget is cracked.",
                                     replies=[TicketMessage(author="support1@acme.example",
                                                            body="Sorry! Sending a replacement.")])]),
        Ticket(ticket_id="t-2", tenant_id=Tenant.globex, customer_id="c-3",
               subject="Invoice question", status=TicketStatus.pending,
               priority=Priority.normal,
               thread=[TicketMessage(author="carol@globex.example", body="Card 4012 8888 8888 1881 charged twice?")]),
    ]
    return {
        "customers": {c.customer_id: c for c in customers},
        "orders": {o.order_id: o for o in orders},
        "tickets": {t.ticket_id: t for t in tickets},
        "refunds": {},
        "next_ticket": 3,
        "next_refund": 1,
    }


DB = _seed()


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@app.get("/health", operation_id="health", tags=["health"], response_model=Health)
def health() -> Health:
    """Report that the service is alive."""
    return Health(status="ok")


@app.get("/customers", operation_id="list_customers", tags=["customers"],
         response_model=List[Customer], summary="List customers")
def list_customers(
    tenant_id: Optional[Tenant] = Query(None, description="Only customers of this tenant"),
    limit: int = Query(50, ge=1, le=100, description="Maximum number of customers"),
    q: Optional[str] = Query(None, description="Case-insensitive substring of the name"),
) -> List[Customer]:
    """List customers, optionally of one tenant."""
    out = [c for c in DB["customers"].values()
           if (tenant_id is None or c.tenant_id == tenant_id)
           and (q is None or q.lower() in c.name.lower())]
    return out[:limit]


@app.get("/customers/{customer_id}", operation_id="get_customer", tags=["customers"],
         response_model=Customer, summary="Get one customer",
         responses={404: {"description": "No such customer"}})
def get_customer(customer_id: str = Path(..., description="The customer's id, e.g. c-1")) -> Customer:
    """Return one customer with contact and payment details."""
    c = DB["customers"].get(customer_id)
    if c is None:
        raise HTTPException(status_code=404, detail="customer not found")
    return c


@app.get("/customers/{customer_id}/orders", operation_id="list_customer_orders",
         tags=["customers", "orders"], response_model=List[Order],
         summary="List a customer's orders")
def list_customer_orders(
    customer_id: str = Path(..., description="The customer's id"),
    since: Optional[str] = Query(None, description="Only orders created at or after this RFC 3339 time"),
    sku: Optional[List[str]] = Query(None, description="Only orders containing one of these SKUs"),
) -> List[Order]:
    """Return the orders of one customer, oldest first."""
    if customer_id not in DB["customers"]:
        raise HTTPException(status_code=404, detail="customer not found")
    out = [o for o in DB["orders"].values() if o.customer_id == customer_id]
    if since:
        out = [o for o in out if o.created_at >= since]
    if sku:
        out = [o for o in out if any(line.sku in sku for line in o.lines)]
    return sorted(out, key=lambda o: o.created_at)


@app.get("/tickets", operation_id="list_tickets", tags=["tickets"], response_model=List[Ticket],
         summary="List tickets")
def list_tickets(
    tenant_id: Optional[Tenant] = Query(None),
    status: Optional[TicketStatus] = Query(None),
) -> List[Ticket]:
    """List support tickets, optionally filtered by tenant and status."""
    return [t for t in DB["tickets"].values()
            if (tenant_id is None or t.tenant_id == tenant_id)
            and (status is None or t.status == status)]


@app.get("/tickets/{ticket_id}", operation_id="get_ticket", tags=["tickets"],
         response_model=Ticket, summary="Get one ticket")
def get_ticket(ticket_id: str) -> Ticket:
    """Return one ticket with its message thread."""
    t = DB["tickets"].get(ticket_id)
    if t is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    return t


@app.post("/tickets", operation_id="create_ticket", tags=["tickets"], response_model=Ticket,
          status_code=201, summary="Open a ticket")
def create_ticket(body: TicketCreate,
                  x_request_source: Optional[str] = Header(None, description="Free-form origin label"),
                  caller: Optional[Caller] = Depends(harness_caller)) -> Ticket:
    """Open a support ticket for a customer of the same tenant."""
    c = DB["customers"].get(body.customer_id)
    if c is None or c.tenant_id != body.tenant_id:
        raise HTTPException(status_code=404, detail="customer not found in tenant")
    tid = f"t-{DB['next_ticket']}"
    DB["next_ticket"] += 1
    t = Ticket(ticket_id=tid, tenant_id=body.tenant_id, customer_id=body.customer_id,
               subject=body.subject, status=TicketStatus.open, priority=body.priority,
               notes=f"source={x_request_source}" if x_request_source else "",
               thread=copy.deepcopy(body.thread),
               created_by=caller.human if caller else None,
               via=caller.agent if caller else None)
    DB["tickets"][tid] = t
    return t


@app.patch("/tickets/{ticket_id}", operation_id="update_ticket", tags=["tickets"],
           response_model=Ticket, summary="Update a ticket")
def update_ticket(ticket_id: str, body: TicketUpdate) -> Ticket:
    """Change status, priority or assignee of a ticket, or append a reply."""
    t = DB["tickets"].get(ticket_id)
    if t is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    if body.status is not None:
        t.status = body.status
    if body.priority is not None:
        t.priority = body.priority
    if body.assignee is not None:
        t.assignee = body.assignee
    if body.reply is not None:
        t.thread.append(body.reply)
    return t


@app.delete("/tickets/{ticket_id}", operation_id="delete_ticket", tags=["tickets"],
            status_code=204, summary="Delete a ticket", response_class=Response)
def delete_ticket(ticket_id: str, reason: Optional[str] = Query(None, description="Why it is deleted")) -> Response:
    """Delete a ticket for good."""
    if DB["tickets"].pop(ticket_id, None) is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    return Response(status_code=204)


@app.get("/orders/{order_id}", operation_id="get_order", tags=["orders"], response_model=Order,
         summary="Get one order")
def get_order(order_id: str) -> Order:
    """Return one order."""
    o = DB["orders"].get(order_id)
    if o is None:
        raise HTTPException(status_code=404, detail="order not found")
    return o


@app.get("/refunds", operation_id="list_refunds", tags=["refunds"], response_model=List[Refund],
         summary="List refunds")
def list_refunds(tenant_id: Optional[Tenant] = Query(None)) -> List[Refund]:
    """List issued refunds."""
    return [r for r in DB["refunds"].values() if tenant_id is None or r.tenant_id == tenant_id]


@app.post("/refunds", operation_id="issue_refund", tags=["refunds", "orders"],
          response_model=Refund, status_code=201, summary="Issue a refund",
          responses={409: {"description": "Refund exceeds the order total"}})
def issue_refund(body: RefundCreate) -> Refund:
    """Refund part or all of an order to the card on file."""
    o = DB["orders"].get(body.order_id)
    if o is None or o.tenant_id != body.tenant_id:
        raise HTTPException(status_code=404, detail="order not found in tenant")
    already = sum(r.amount_cents for r in DB["refunds"].values() if r.order_id == o.order_id)
    if already + body.amount_cents > o.total_cents:
        raise HTTPException(status_code=409, detail="refund exceeds order total")
    rid = f"r-{DB['next_refund']}"
    DB["next_refund"] += 1
    r = Refund(refund_id=rid, tenant_id=body.tenant_id, order_id=o.order_id,
               customer_id=o.customer_id, amount_cents=body.amount_cents, reason=body.reason,
               comment=body.comment, card_number=DB["customers"][o.customer_id].card_number,
               created_at=_now())
    DB["refunds"][rid] = r
    return r


@app.get("/whoami", operation_id="whoami", tags=["identity"], response_model=WhoAmI,
         summary="Show the identity headers received")
def whoami(
    authorization: Optional[str] = Header(None, include_in_schema=False),
    traceparent: Optional[str] = Header(None, include_in_schema=False),
    x_request_id: Optional[str] = Header(None, include_in_schema=False),
    caller: Optional[Caller] = Depends(harness_caller),
) -> WhoAmI:
    """Echo what identity the gateway sent, for debugging the delegation chain."""
    # With verification on, harness_caller has already refused (401) a missing
    # or invalid assertion, so the claims decoded below are the verified ones.
    # With verification off they are decoded WITHOUT verification, for
    # debugging only, and must not be trusted for any decision.
    scheme = None
    claims = None
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            try:
                import jwt  # PyJWT

                claims = jwt.decode(token, options={"verify_signature": False})
            except Exception:  # noqa: BLE001 - any malformed token just yields no claims
                claims = None
    seen = {}
    if traceparent:
        seen["traceparent"] = traceparent
    if x_request_id:
        seen["x-request-id"] = x_request_id
    out = WhoAmI(
        authorization_present=authorization is not None,
        authorization_scheme=scheme,
        assertion_claims=claims,
        traceparent=traceparent,
        headers=seen,
        verification="on" if verification_enabled() else "off",
    )
    if caller is not None:
        out.human, out.agent, out.actors = caller.human, caller.agent, list(caller.actors)
        out.roles, out.email = list(caller.roles), caller.email
        out.delegation_id, out.scopes = caller.delegation_id, list(caller.scopes)
    return out


# The "branch" variant: a preview deployment of a pull request that adds one
# endpoint. Production (HARNESS_SAMPLE_BRANCH unset) has no such operation.
SAMPLE_BRANCH = os.environ.get("HARNESS_SAMPLE_BRANCH", "").strip()


class Loyalty(BaseModel):
    """A customer's loyalty points (the branch's new feature)."""

    customer_id: str
    points: int
    branch: str = Field(..., description="The branch whose deployment answered")


if SAMPLE_BRANCH:

    @app.get("/customers/{customer_id}/loyalty", operation_id="get_customer_loyalty", tags=["customers"],
             response_model=Loyalty, summary="Get a customer's loyalty points")
    def get_customer_loyalty(customer_id: str = Path(..., description="The customer's id, e.g. c-1")) -> Loyalty:
        """Loyalty points of one customer: ten per euro spent."""
        if customer_id not in DB["customers"]:
            raise HTTPException(status_code=404, detail=f"customer {customer_id} not found")
        spent = sum(o.total_cents for o in DB["orders"].values() if o.customer_id == customer_id)
        return Loyalty(customer_id=customer_id, points=spent // 10, branch=SAMPLE_BRANCH)
