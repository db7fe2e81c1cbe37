package sampleapi

import (
	"bytes"
	_ "embed" // for the OpenAPI document
)

// openAPIDoc is the OpenAPI 3.1.0 document of the sample API, written to
// match what FastAPI generates for an equivalent app.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns a copy of the sample API's OpenAPI 3.1.0 document (JSON),
// the same bytes that GET /openapi.json serves.
func OpenAPI() []byte {
	return bytes.Clone(openAPIDoc)
}
