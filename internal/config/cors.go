package config

import (
	"fmt"
	"net/url"
	"strings"
)

// CORS is the cross-origin policy of /mcp. The metadata documents
// (RFC 9728, RFC 8414, JWKS) and the OAuth JSON endpoints are public and
// carry no cookie: they answer every origin ("*") whatever this says.
type CORS struct {
	// AllowedOrigins are the origins (scheme://host[:port]) whose pages may
	// call /mcp from a browser. Empty (the default): none; a request to /mcp
	// whose Origin is neither listed nor public_url's own is refused (403).
	// "*" is not accepted: any-origin is for the metadata documents only.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

func (c *Config) validateCORS() Problems {
	var ps Problems
	for i, o := range c.CORS.AllowedOrigins {
		p := fmt.Sprintf("cors.allowed_origins[%d]", i)
		if err := checkOrigin(o); err != nil {
			ps = append(ps, Problem{Path: p, Msg: err.Error()})
		}
	}
	return ps
}

// checkOrigin accepts an exact web origin: http(s), a host, an optional
// port, nothing else.
func checkOrigin(o string) error {
	if o == "*" {
		return fmt.Errorf(`"*" is allowed only for the metadata documents, which already answer any origin; list the origins of the browser clients that may call /mcp`)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an origin such as https://app.example.com", o)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "/") {
		return fmt.Errorf("%q is not an origin: no path, query, user or trailing slash (scheme://host[:port])", o)
	}
	if o != strings.ToLower(o) {
		return fmt.Errorf("%q must be lower case, as browsers send it", o)
	}
	return nil
}
