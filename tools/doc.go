// Package tools is Harness's tool catalogue: it turns OpenAPI 3.0 and 3.1
// documents into MCP tools, builds and sends the HTTP request for one tool
// call, and keeps the tools of every configured upstream in a catalogue that
// can be refreshed while calls are in flight.
//
// The conversion contract (fixed by the architecture):
//
//   - every operation becomes a tool named "<upstream>_<operationId>"; characters
//     outside [A-Za-z0-9_-] become "_", and names longer than 64 characters are
//     cut and given a short hash suffix so that they stay unique;
//   - path, query and header parameters become top-level arguments, and so do
//     the properties of an object JSON body; a body that is not an object, or
//     whose properties clash with a parameter, is one argument named "body";
//   - local $refs are resolved; recursive schemas are emitted once under the
//     input schema's "$defs" and referred to as "#/$defs/<Name>";
//   - GET, HEAD and OPTIONS are read-only, DELETE is destructive, and the
//     HTTP-idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) are idempotent.
//
// Requests are built defensively: arguments can never change the scheme, host
// or base path of the upstream, nor set hop-by-hop or security headers.
package tools
