package policy

import (
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Actions a policy is asked about.
const (
	// ActionCall is a tool call.
	ActionCall = "call"
	// ActionList is the filtering of tools/list (and of resources/list
	// and prompts/list, with Resource or Prompt in place of Tool).
	ActionList = "list"
	// ActionRead is the reading of a resource of an upstream MCP server.
	ActionRead = "read"
	// ActionPrompt is the getting of a prompt of an upstream MCP server.
	ActionPrompt = "prompt"
)

// Input is the document a policy decides on. Its JSON form is the contract in
// ARCHITECTURE.md; nil slices and maps are given to the policy as empty ones.
type Input struct {
	// Action is "call" or "list".
	Action string `json:"action"`
	// Subject is the human on whose behalf the agent acts.
	Subject Subject `json:"subject"`
	// Agent is the software acting.
	Agent Agent `json:"agent"`
	// Delegation is the grant the agent presented; nil (JSON null) when the
	// agent presented the human's own token.
	Delegation *Delegation `json:"delegation"`
	// Tool is the tool called or listed (absent when Resource or Prompt
	// is set).
	Tool Tool `json:"tool"`
	// Resource is the resource read or listed (action read, or list of
	// resources); nil otherwise.
	Resource *Resource `json:"resource,omitempty"`
	// Prompt is the prompt got or listed (action prompt, or list of
	// prompts); nil otherwise.
	Prompt *Prompt `json:"prompt,omitempty"`
	// Arguments are the call's arguments (empty when listing).
	Arguments map[string]any `json:"arguments"`
	// Environment names the deployment, e.g. "production"; inside a
	// preview environment, the preview's name.
	Environment string `json:"environment"`
	// Preview describes the preview environment the request is served in;
	// nil (JSON null) outside previews.
	Preview *Preview `json:"preview"`
	// Time is the time of the request in RFC 3339.
	Time string `json:"time"`
	// Detections counts what the redaction detectors found in the arguments,
	// by detector name (e.g. {"secret": 1}).
	Detections map[string]int `json:"detections,omitempty"`
	// CacheKey, when set, identifies the caller's credential (e.g. a hash
	// of the token): the same key must always mean the same subject, agent
	// and delegation. It lets Decide reuse the decision of a policy that
	// reads neither arguments nor time (see memo.go). Not part of the
	// policy's input.
	CacheKey string `json:"-"`
}

// Subject is the human behind a request.
type Subject struct {
	// Iss is the issuer of the human's token.
	Iss string `json:"iss"`
	// Sub is the subject identifier at that issuer.
	Sub string `json:"sub"`
	// Email is the human's email, if known.
	Email string `json:"email"`
	// Name is the human's display name, if known.
	Name string `json:"name"`
	// Roles are the roles taken from the configured roles claim.
	Roles []string `json:"roles"`
	// Claims holds every claim of the human's token.
	Claims map[string]any `json:"claims"`
}

// Agent is the software acting for the subject.
type Agent struct {
	// ID identifies the agent (its client id).
	ID string `json:"id"`
	// SessionID is the MCP session, if any.
	SessionID string `json:"session_id"`
}

// Delegation is a grant of tools from a human to an agent.
type Delegation struct {
	// ID is the grant's identifier (the token's jti).
	ID string `json:"id"`
	// Scopes are the granted scopes, e.g. "tool:crm_*".
	Scopes []string `json:"scopes"`
	// ExpiresAt is the end of the grant in RFC 3339.
	ExpiresAt string `json:"expires_at"`
}

// Preview describes a preview environment (a branch's scoped gateway) to
// the policy.
type Preview struct {
	// Name is the environment's name, e.g. "pr-42".
	Name string `json:"name"`
	// Branch is the branch deployed there.
	Branch string `json:"branch"`
	// PullRequest is the pull request's number (0 when none).
	PullRequest int `json:"pull_request"`
	// Repository is the repository, e.g. "acme/crm".
	Repository string `json:"repository"`
	// Owner is the branch's author.
	Owner string `json:"owner"`
	// CreatedBy is who created the environment (CI actor or admin).
	CreatedBy string `json:"created_by"`
	// ExpiresAt is when the environment expires, in RFC 3339.
	ExpiresAt string `json:"expires_at"`
}

// Tool describes a tool to the policy.
type Tool struct {
	// Name is the MCP tool name, e.g. "crm_get_customer".
	Name string `json:"name"`
	// Upstream is the name of the upstream serving it.
	Upstream string `json:"upstream"`
	// Operation is the upstream operation id.
	Operation string `json:"operation"`
	// Method is the HTTP method, empty for tools of an upstream MCP server.
	Method string `json:"method"`
	// Path is the HTTP path template.
	Path string `json:"path"`
	// Tags are the operation's tags.
	Tags []string `json:"tags"`
	// Kind is "openapi", or "mcp" for a tool of an upstream MCP server.
	Kind string `json:"kind"`
	// Annotations are an MCP tool's annotations (readOnlyHint…); empty for
	// OpenAPI tools.
	Annotations map[string]any `json:"annotations"`
}

// Resource describes a resource of an upstream MCP server to the policy.
type Resource struct {
	// URI is the resource's URI (as the agent asked for it).
	URI string `json:"uri"`
	// Upstream is the name of the upstream that serves it.
	Upstream string `json:"upstream"`
	// Name is the resource's (or its template's) name.
	Name string `json:"name"`
	// MimeType is its MIME type, if known.
	MimeType string `json:"mime_type"`
}

// Prompt describes a prompt of an upstream MCP server to the policy.
type Prompt struct {
	// Name is the gateway's name for it (with the upstream's prefix).
	Name string `json:"name"`
	// Upstream is the name of the upstream that serves it.
	Upstream string `json:"upstream"`
	// Operation is the server's own name for it.
	Operation string `json:"operation"`
}

// Keys of the input document, built once.
var (
	kAction      = ast.StringTerm("action")
	kSubject     = ast.StringTerm("subject")
	kAgent       = ast.StringTerm("agent")
	kDelegation  = ast.StringTerm("delegation")
	kTool        = ast.StringTerm("tool")
	kArguments   = ast.StringTerm("arguments")
	kEnvironment = ast.StringTerm("environment")
	kTime        = ast.StringTerm("time")
	kDetections  = ast.StringTerm("detections")
	kIss         = ast.StringTerm("iss")
	kSub         = ast.StringTerm("sub")
	kEmail       = ast.StringTerm("email")
	kName        = ast.StringTerm("name")
	kRoles       = ast.StringTerm("roles")
	kClaims      = ast.StringTerm("claims")
	kID          = ast.StringTerm("id")
	kSessionID   = ast.StringTerm("session_id")
	kScopes      = ast.StringTerm("scopes")
	kExpiresAt   = ast.StringTerm("expires_at")
	kUpstream    = ast.StringTerm("upstream")
	kOperation   = ast.StringTerm("operation")
	kMethod      = ast.StringTerm("method")
	kPath        = ast.StringTerm("path")
	kTags        = ast.StringTerm("tags")
	kKind        = ast.StringTerm("kind")
	kAnnotations = ast.StringTerm("annotations")
	kResource    = ast.StringTerm("resource")
	kPrompt      = ast.StringTerm("prompt")
	kURI         = ast.StringTerm("uri")
	kMimeType    = ast.StringTerm("mime_type")
	kPreview     = ast.StringTerm("preview")
	kBranch      = ast.StringTerm("branch")
	kPullRequest = ast.StringTerm("pull_request")
	kRepository  = ast.StringTerm("repository")
	kOwner       = ast.StringTerm("owner")
	kCreatedBy   = ast.StringTerm("created_by")
)

// value builds the input document as an OPA value, without a JSON round trip.
// withTool is false for the base of a list query.
func (in *Input) value(action string, withTool bool) (ast.Object, error) {
	claims, err := anyObject(in.Subject.Claims)
	if err != nil {
		return nil, fmt.Errorf("subject claims: %w", err)
	}
	args, err := anyObject(in.Arguments)
	if err != nil {
		return nil, fmt.Errorf("arguments: %w", err)
	}
	subject := ast.NewObject(
		ast.Item(kIss, ast.StringTerm(in.Subject.Iss)),
		ast.Item(kSub, ast.StringTerm(in.Subject.Sub)),
		ast.Item(kEmail, ast.StringTerm(in.Subject.Email)),
		ast.Item(kName, ast.StringTerm(in.Subject.Name)),
		ast.Item(kRoles, stringsTerm(in.Subject.Roles)),
		ast.Item(kClaims, ast.NewTerm(claims)),
	)
	agent := ast.NewObject(
		ast.Item(kID, ast.StringTerm(in.Agent.ID)),
		ast.Item(kSessionID, ast.StringTerm(in.Agent.SessionID)),
	)
	deleg := ast.NullTerm()
	if d := in.Delegation; d != nil {
		deleg = ast.ObjectTerm(
			ast.Item(kID, ast.StringTerm(d.ID)),
			ast.Item(kScopes, stringsTerm(d.Scopes)),
			ast.Item(kExpiresAt, ast.StringTerm(d.ExpiresAt)),
		)
	}
	preview := ast.NullTerm()
	if pv := in.Preview; pv != nil {
		preview = ast.ObjectTerm(
			ast.Item(kName, ast.StringTerm(pv.Name)),
			ast.Item(kBranch, ast.StringTerm(pv.Branch)),
			ast.Item(kPullRequest, ast.IntNumberTerm(pv.PullRequest)),
			ast.Item(kRepository, ast.StringTerm(pv.Repository)),
			ast.Item(kOwner, ast.StringTerm(pv.Owner)),
			ast.Item(kCreatedBy, ast.StringTerm(pv.CreatedBy)),
			ast.Item(kExpiresAt, ast.StringTerm(pv.ExpiresAt)),
		)
	}
	items := make([][2]*ast.Term, 0, 10)
	items = append(items,
		ast.Item(kAction, ast.StringTerm(action)),
		ast.Item(kSubject, ast.NewTerm(subject)),
		ast.Item(kAgent, ast.NewTerm(agent)),
		ast.Item(kDelegation, deleg),
		ast.Item(kArguments, ast.NewTerm(args)),
		ast.Item(kEnvironment, ast.StringTerm(in.Environment)),
		ast.Item(kPreview, preview),
		ast.Item(kTime, ast.StringTerm(in.Time)),
	)
	switch {
	case in.Resource != nil:
		r := in.Resource
		items = append(items, ast.Item(kResource, ast.ObjectTerm(
			ast.Item(kURI, ast.StringTerm(r.URI)),
			ast.Item(kUpstream, ast.StringTerm(r.Upstream)),
			ast.Item(kName, ast.StringTerm(r.Name)),
			ast.Item(kMimeType, ast.StringTerm(r.MimeType)),
		)))
	case in.Prompt != nil:
		p := in.Prompt
		items = append(items, ast.Item(kPrompt, ast.ObjectTerm(
			ast.Item(kName, ast.StringTerm(p.Name)),
			ast.Item(kUpstream, ast.StringTerm(p.Upstream)),
			ast.Item(kOperation, ast.StringTerm(p.Operation)),
		)))
	case withTool:
		t, err := in.Tool.term()
		if err != nil {
			return nil, err
		}
		items = append(items, ast.Item(kTool, t))
	}
	if len(in.Detections) > 0 {
		keys := make([]string, 0, len(in.Detections))
		for k := range in.Detections {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		det := make([][2]*ast.Term, 0, len(keys))
		for _, k := range keys {
			det = append(det, ast.Item(ast.StringTerm(k), ast.IntNumberTerm(in.Detections[k])))
		}
		items = append(items, ast.Item(kDetections, ast.ObjectTerm(det...)))
	}
	return ast.NewObject(items...), nil
}

// term builds the tool document.
func (t *Tool) term() (*ast.Term, error) {
	kind := t.Kind
	if kind == "" {
		kind = "openapi"
	}
	ann, err := anyObject(t.Annotations)
	if err != nil {
		return nil, fmt.Errorf("tool annotations: %w", err)
	}
	return ast.ObjectTerm(
		ast.Item(kName, ast.StringTerm(t.Name)),
		ast.Item(kUpstream, ast.StringTerm(t.Upstream)),
		ast.Item(kOperation, ast.StringTerm(t.Operation)),
		ast.Item(kMethod, ast.StringTerm(t.Method)),
		ast.Item(kPath, ast.StringTerm(t.Path)),
		ast.Item(kTags, stringsTerm(t.Tags)),
		ast.Item(kKind, ast.StringTerm(kind)),
		ast.Item(kAnnotations, ast.NewTerm(ann)),
	), nil
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

// anyObject converts a JSON-like map to an OPA object; nil is the empty
// object. (ast.LazyObject was measured: no fewer allocations for a token's
// claims, and it defers conversion errors to a panic inside evaluation.)
func anyObject(m map[string]any) (ast.Value, error) {
	if len(m) == 0 {
		return ast.NewObject(), nil
	}
	return ast.InterfaceToValue(m)
}
