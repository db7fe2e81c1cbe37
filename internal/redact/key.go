package redact

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Keys of redact and context rules match object keys case-insensitively
// after Unicode NFKC normalisation, with invisible characters dropped: an
// upstream (or whoever wrote the record) cannot dodge "tenant_id" with
// "Tenant_ID", "ｔｅｎａｎｔ_id" or "tenant\u200b_id".

// appendFoldKey appends the comparison form of key to dst. ASCII keys
// (the common case) are only lower-cased.
func appendFoldKey(dst, key []byte) []byte {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return append(dst, foldSlow(string(key))...)
		}
	}
	for _, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// foldKey returns the comparison form of key.
func foldKey(key string) string {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return string(appendFoldKey(nil, []byte(key)))
		}
	}
	return key
}

// foldedASCII reports whether key is its own comparison form (ASCII
// without upper-case letters), so no copy is needed.
func foldedASCII(key []byte) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// foldSlow: drop invisible characters, NFKC, full case folding, NFKC again
// (folding may denormalise), and drop invisibles that normalisation made.
func foldSlow(s string) string {
	s = dropInvisible(s)
	s = norm.NFKC.String(s)
	s = cases.Fold().String(s) // a Caser is stateful: one per call
	s = norm.NFKC.String(s)
	return dropInvisible(s)
}

// invisible reports whether r renders as nothing: format characters (Cf:
// zero-width space, joiners, bidi controls, U+FEFF, soft hyphen, tags),
// the other default-ignorable code points (U+034F, U+115F, U+3164, …)
// and variation selectors.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

func dropInvisible(s string) string {
	for i, r := range s {
		if invisible(r) {
			b := make([]byte, 0, len(s))
			b = append(b, s[:i]...)
			for _, r := range s[i:] {
				if !invisible(r) {
					b = utf8.AppendRune(b, r)
				}
			}
			return string(b)
		}
	}
	return s
}
