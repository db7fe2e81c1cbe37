package redact

import "bytes"

// detSet is a bit set of detector kinds (1<<kind).
type detSet uint16

// match is one finding: s[start:end] is replaced by the mask of k.
type match struct {
	k          kind
	start, end int
}

// Character classes.
const (
	cWord   = 1 << iota // [A-Za-z0-9_]
	cDigit              // [0-9]
	cUpper              // [A-Z]
	cAlnum              // [A-Za-z0-9]
	cLocal              // e-mail local part [A-Za-z0-9._%+-]
	cDomain             // [A-Za-z0-9-]
	cB64URL             // [A-Za-z0-9_-]
	cToken              // bearer token [A-Za-z0-9._~+/=-]
	cB64                // [A-Za-z0-9/+=]
	cLetter             // [A-Za-z]
)

var ctab = func() (t [256]uint16) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		up, lo, dg := b >= 'A' && b <= 'Z', b >= 'a' && b <= 'z', b >= '0' && b <= '9'
		an := up || lo || dg
		set := func(cond bool, f uint16) {
			if cond {
				t[c] |= f
			}
		}
		set(an || b == '_', cWord)
		set(dg, cDigit)
		set(up, cUpper)
		set(an, cAlnum)
		set(an || b == '.' || b == '_' || b == '%' || b == '+' || b == '-', cLocal)
		set(an || b == '-', cDomain)
		set(an || b == '_' || b == '-', cB64URL)
		set(an || b == '.' || b == '_' || b == '~' || b == '+' || b == '/' || b == '=' || b == '-', cToken)
		set(an || b == '/' || b == '+' || b == '=', cB64)
		set(up || lo, cLetter)
	}
	return t
}()

const (
	bSecret = detSet(1 << kSecret)
	bCard   = detSet(1 << kCard)
	bSSN    = detSet(1 << kSSN)
	bEmail  = detSet(1 << kEmail)
	bPhone  = detSet(1 << kPhone)
	bIBAN   = detSet(1 << kIBAN)
)

// trig says which detectors may start a match at a word starting with c.
var trig = func() (t [256]detSet) {
	for c := '0'; c <= '9'; c++ {
		t[c] = bCard | bSSN | bPhone
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = bIBAN
	}
	for _, c := range "ABsrgxeba" {
		t[c] |= bSecret
	}
	return t
}()

// pairs marks the first two bytes of a word that may start a finding (the
// second byte is 0 at the end of the text); a cheap filter before the
// matchers.
var pairs = func() (t [256][4]uint64) {
	set := func(a byte, bs string) {
		for _, b := range []byte(bs) {
			t[a][b>>6] |= 1 << (b & 63)
		}
	}
	const digits, upper = "0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := byte('0'); c <= '9'; c++ {
		set(c, digits+" -.")
	}
	for c := byte('A'); c <= 'Z'; c++ {
		set(c, upper)
	}
	set('A', "wW")
	set('a', "wW")
	set('s', "k")
	set('r', "k")
	set('g', "hi")
	set('x', "o")
	set('e', "y")
	set('b', "e")
	set('B', "e")
	return t
}()

func pairOK(s []byte, i int) bool {
	var b byte
	if i+1 < len(s) {
		b = s[i+1]
	}
	return pairs[s[i]][b>>6]&(1<<(b&63)) != 0
}

func is(c byte, f uint16) bool { return ctab[c]&f != 0 }

// find appends the findings of the detectors in d over s to ms, in order
// and without overlap. It is one left-to-right pass: words that cannot
// start a finding are skipped after a table lookup on their first byte.
func (d detSet) find(s []byte, ms []match) []match {
	if d == 0 {
		return ms
	}
	n := len(s)
	last := 0
	for i := 0; i < n; {
		c := s[i]
		if ctab[c]&cWord == 0 {
			end := 0
			switch c {
			case '@':
				if d&bEmail != 0 {
					var st int
					if st, end = matchEmail(s, i, last); end > 0 {
						ms = append(ms, match{kEmail, st, end})
					}
				}
			case '+', '(':
				if d&bPhone != 0 && (i == 0 || !is(s[i-1], cWord)) {
					if c == '+' {
						end = matchE164(s, i)
					} else {
						end = matchNANP(s, i)
					}
					if end > 0 {
						ms = append(ms, match{kPhone, i, end})
					}
				}
			case '-':
				if d&bSecret != 0 {
					if end = matchPEM(s, i); end > 0 {
						ms = append(ms, match{kSecret, i, end})
					}
				}
			case ':':
				if d&bSecret != 0 {
					var st int
					if st, end = matchURLPassword(s, i); end > 0 {
						ms = append(ms, match{kSecret, st, end})
					}
				}
			case '=':
				if d&bSecret != 0 {
					var st int
					if st, end = matchPasswordPair(s, i, last); end > 0 {
						ms = append(ms, match{kSecret, st, end})
					}
				}
			}
			if end > 0 {
				i, last = end, end
			} else {
				i++
			}
			continue
		}
		if t := trig[c] & d; t != 0 && pairOK(s, i) {
			if m, ok := matchWord(s, i, t); ok {
				ms = append(ms, m)
				i, last = m.end, m.end
				continue
			}
		}
		for i++; i < n && ctab[s[i]]&cWord != 0; i++ {
		}
	}
	return ms
}

// matchWord tries the detectors in t at the start of a word at s[i].
func matchWord(s []byte, i int, t detSet) (match, bool) {
	c := s[i]
	if c >= '0' && c <= '9' {
		if t&bCard != 0 {
			if e := matchCard(s, i); e > 0 {
				return match{kCard, i, e}, true
			}
		}
		if t&bSSN != 0 {
			if e := matchSSN(s, i); e > 0 {
				return match{kSSN, i, e}, true
			}
		}
		if t&bPhone != 0 {
			if e := matchNANP(s, i); e > 0 {
				return match{kPhone, i, e}, true
			}
		}
		return match{}, false
	}
	if t&bSecret != 0 {
		if st, e := matchSecret(s, i); e > 0 {
			return match{kSecret, st, e}, true
		}
	}
	if t&bIBAN != 0 {
		if e := matchIBAN(s, i); e > 0 {
			return match{kIBAN, i, e}, true
		}
	}
	return match{}, false
}

// boundary reports whether position e ends a word.
func boundary(s []byte, e int) bool { return e >= len(s) || !is(s[e], cWord) }

func run(s []byte, i int, f uint16) int {
	for i < len(s) && is(s[i], f) {
		i++
	}
	return i
}

func hasPrefixAt(s []byte, i int, p string) bool {
	return len(s)-i >= len(p) && string(s[i:i+len(p)]) == p
}

// matchSecret recognises provider keys, JWTs, bearer tokens and the AWS
// secret access key assignment at the word s[i:]. The finding may start
// after i (only the token of "Bearer <token>" is masked).
func matchSecret(s []byte, i int) (start, end int) {
	switch s[i] {
	case 's', 'r':
		for _, p := range [...]string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"} {
			if hasPrefixAt(s, i, p) {
				e := run(s, i+len(p), cAlnum)
				if e-i-len(p) >= 10 && boundary(s, e) {
					return i, e
				}
				return 0, 0
			}
		}
		if s[i] == 's' && hasPrefixAt(s, i, "sk-") {
			e := run(s, i+3, cB64URL)
			if e-i-3 >= 20 && boundary(s, e) && bytes.ContainsAny(s[i+3:e], "0123456789") {
				return i, e
			}
		}
	case 'g':
		if hasPrefixAt(s, i, "github_pat_") {
			e := run(s, i+11, cWord)
			if e-i-11 >= 22 && boundary(s, e) {
				return i, e
			}
			return 0, 0
		}
		if len(s)-i > 4 && s[i+1] == 'h' && s[i+3] == '_' {
			switch s[i+2] {
			case 'p', 'o', 's', 'u', 'r':
				e := run(s, i+4, cAlnum)
				if e-i-4 >= 30 && boundary(s, e) {
					return i, e
				}
			}
		}
	case 'x':
		if hasPrefixAt(s, i, "xox") && len(s)-i > 5 && s[i+4] == '-' {
			switch s[i+3] {
			case 'a', 'b', 'p', 'r', 'e', 's':
				e := run(s, i+5, cDomain)
				if e-i-5 >= 10 && boundary(s, e) {
					return i, e
				}
			}
		}
	case 'e':
		return matchJWT(s, i)
	case 'A':
		if hasPrefixAt(s, i, "AKIA") || hasPrefixAt(s, i, "ASIA") {
			e := i + 4
			for e < len(s) && (is(s[e], cUpper) || is(s[e], cDigit)) {
				e++
			}
			if e-i == 20 && boundary(s, e) {
				return i, e
			}
			return 0, 0
		}
		if hasPrefixAt(s, i, "AIza") {
			e := run(s, i+4, cB64URL)
			if e-i-4 >= 30 && boundary(s, e) {
				return i, e
			}
			return 0, 0
		}
		return matchAWSSecret(s, i)
	case 'a':
		return matchAWSSecret(s, i)
	case 'B', 'b':
		if hasPrefixAt(s, i+1, "earer ") {
			st := i + 7
			for st < len(s) && s[st] == ' ' {
				st++
			}
			e := run(s, st, cToken)
			if e-st >= 8 {
				return st, e
			}
		}
	}
	return 0, 0
}

func matchJWT(s []byte, i int) (int, int) {
	if !hasPrefixAt(s, i, "eyJ") {
		return 0, 0
	}
	e := run(s, i+3, cB64URL)
	if e-i < 10 || e >= len(s) || s[e] != '.' || !hasPrefixAt(s, e+1, "eyJ") {
		return 0, 0
	}
	e = run(s, e+4, cB64URL)
	if e >= len(s) || s[e] != '.' {
		return 0, 0
	}
	e = run(s, e+1, cB64URL)
	if !boundary(s, e) {
		return 0, 0
	}
	return i, e
}

const awsSecretKey = "aws_secret_access_key"

// isAWSSecretKey reports whether an object key names an AWS secret key.
func isAWSSecretKey(k []byte) bool { return bytes.EqualFold(k, []byte(awsSecretKey)) }

// matchAWSSecret recognises aws_secret_access_key (any case) followed by
// quotes, spaces, ":" or "=" and a 40-character secret; the secret is masked.
func matchAWSSecret(s []byte, i int) (int, int) {
	if len(s)-i < len(awsSecretKey)+41 || !isAWSSecretKey(s[i:i+len(awsSecretKey)]) {
		return 0, 0
	}
	j := i + len(awsSecretKey)
	if !boundary(s, j) {
		return 0, 0
	}
	for k := 0; k < 6 && j < len(s); k++ {
		if c := s[j]; c == '"' || c == '\'' || c == ' ' || c == ':' || c == '=' || c == '\t' {
			j++
			continue
		}
		break
	}
	e := run(s, j, cB64)
	if e-j == 40 {
		return j, e
	}
	return 0, 0
}

// matchPEM recognises a PEM private key block starting at s[i] == '-'. A
// block without its END line is masked to the end of s (fail closed).
func matchPEM(s []byte, i int) int {
	const begin = "-----BEGIN "
	if !hasPrefixAt(s, i, begin) {
		return 0
	}
	j := i + len(begin)
	lim := min(len(s), j+64)
	k := bytes.Index(s[j:lim], []byte("-----"))
	if k < 0 || !bytes.HasSuffix(s[j:j+k], []byte("PRIVATE KEY")) {
		return 0
	}
	j += k + 5
	k = bytes.Index(s[j:], []byte("-----END "))
	if k < 0 {
		return len(s)
	}
	j += k + 9
	k = bytes.Index(s[j:min(len(s), j+64)], []byte("-----"))
	if k < 0 {
		return len(s)
	}
	return j + k + 5
}

// matchCard recognises 13–19 Luhn-valid digits starting with 2–6 (the
// major networks), contiguous or in groups of 3–6 separated by one space
// or dash (the first group 4–6 digits). A grouped run followed by more
// groups is tried at each group boundary, longest first.
func matchCard(s []byte, i int) int {
	if s[i] < '2' || s[i] > '6' {
		return 0
	}
	n := len(s)
	j := run(s, i, cDigit)
	first := j - i
	if j+1 >= n || (s[j] != ' ' && s[j] != '-') || !is(s[j+1], cDigit) || first > 6 {
		if first >= 13 && first <= 19 && boundary(s, j) && luhn(s[i:j]) {
			return j
		}
		return 0
	}
	if first < 4 {
		return 0
	}
	sep := s[j]
	var ends, tot [8]int
	ends[0], tot[0] = j, first
	ng := 1
	for ng < len(ends) && j+1 < n && s[j] == sep && is(s[j+1], cDigit) {
		k := run(s, j+1, cDigit)
		g := k - j - 1
		if g < 3 || g > 6 {
			break
		}
		ends[ng], tot[ng] = k, tot[ng-1]+g
		j = k
		ng++
	}
	for g := ng - 1; g >= 1; g-- {
		if tot[g] >= 13 && tot[g] <= 19 && boundary(s, ends[g]) && luhn(s[i:ends[g]]) {
			return ends[g]
		}
	}
	return 0
}

// luhn checks the Luhn sum of the digits in b, ignoring separators.
func luhn(b []byte) bool {
	sum, dbl := 0, false
	for k := len(b) - 1; k >= 0; k-- {
		c := b[k]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if dbl {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		dbl = !dbl
	}
	return sum%10 == 0
}

func digitsAt(s []byte, i, n int) bool {
	if len(s)-i < n {
		return false
	}
	for _, c := range s[i : i+n] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// matchSSN recognises AAA-GG-SSSS outside the never-issued ranges.
func matchSSN(s []byte, i int) int {
	if !digitsAt(s, i, 3) || len(s)-i < 11 || s[i+3] != '-' || !digitsAt(s, i+4, 2) || s[i+6] != '-' || !digitsAt(s, i+7, 4) || !boundary(s, i+11) {
		return 0
	}
	a := s[i : i+3]
	if string(a) == "000" || string(a) == "666" || a[0] == '9' || string(s[i+4:i+6]) == "00" || string(s[i+7:i+11]) == "0000" {
		return 0
	}
	return i + 11
}

// matchNANP recognises North American numbers with separators:
// "(415) 555-2671", "415-555-2671", "415.555.2671", "415 555 2671",
// "1-800-555-0199". Area and exchange codes start with 2–9.
func matchNANP(s []byte, i int) int {
	n := len(s)
	j := i
	if s[j] == '(' {
		if !digitsAt(s, j+1, 3) || j+4 >= n || s[j+4] != ')' || s[j+1] < '2' {
			return 0
		}
		j += 5
		if j < n && s[j] == ' ' {
			j++
		}
		if !digitsAt(s, j, 3) || s[j] < '2' || j+3 >= n || (s[j+3] != '-' && s[j+3] != '.' && s[j+3] != ' ') || !digitsAt(s, j+4, 4) || !boundary(s, j+8) {
			return 0
		}
		return j + 8
	}
	if s[j] == '1' && j+1 < n && (s[j+1] == '-' || s[j+1] == '.' || s[j+1] == ' ') && digitsAt(s, j+2, 3) {
		if e := matchNANP(s, j+2); e > 0 && s[j+5] == s[j+1] {
			return e
		}
		return 0
	}
	if !digitsAt(s, j, 3) || s[j] < '2' || j+3 >= n {
		return 0
	}
	sep := s[j+3]
	if sep != '-' && sep != '.' && sep != ' ' {
		return 0
	}
	if !digitsAt(s, j+4, 3) || s[j+4] < '2' || j+7 >= n || s[j+7] != sep || !digitsAt(s, j+8, 4) || !boundary(s, j+12) {
		return 0
	}
	return j + 12
}

// matchE164 recognises "+" and 8–15 digits, optionally grouped by single
// spaces, dashes or dots, with at most one parenthesised group. When more
// groups follow, the longest prefix of at most 15 digits is taken.
func matchE164(s []byte, i int) int {
	n := len(s)
	j := i + 1
	if j >= n || s[j] < '1' || s[j] > '9' {
		return 0
	}
	digits, parens, best := 0, false, 0
	for j < n && digits <= 15 {
		switch c := s[j]; {
		case c >= '0' && c <= '9':
			k := run(s, j, cDigit)
			digits += k - j
			j = k
		case c == '(' && !parens && digitsAt(s, j+1, 1):
			k := run(s, j+1, cDigit)
			if k >= n || s[k] != ')' || k-j-1 > 4 {
				return best
			}
			parens = true
			digits += k - j - 1
			j = k + 1
			if j < n && s[j] == ' ' && digitsAt(s, j+1, 1) {
				j++
			}
			continue
		case (c == ' ' || c == '-' || c == '.') && j+1 < n && (is(s[j+1], cDigit) || s[j+1] == '('):
			j++
			continue
		default:
			return best
		}
		if digits >= 8 && digits <= 15 {
			if !boundary(s, j) {
				return 0
			}
			best = j
		}
	}
	return best
}

// matchEmail recognises local@domain.tld around the "@" at s[at]; the
// local part is looked for back to bound.
func matchEmail(s []byte, at, bound int) (int, int) {
	st := at
	for st > bound && is(s[st-1], cLocal) {
		st--
	}
	for st < at && s[st] == '.' {
		st++
	}
	if st == at {
		return 0, 0
	}
	// domain: labels of [A-Za-z0-9-] joined by single dots, a letter-only
	// TLD of two or more letters.
	j := at + 1
	end, labels := 0, 0
	for {
		k := run(s, j, cDomain)
		if k == j {
			break
		}
		labels++
		tld := k-j >= 2
		for _, c := range s[j:k] {
			if !is(c, cLetter) {
				tld = false
				break
			}
		}
		if labels >= 2 && tld {
			end = k
		}
		if k+1 < len(s) && s[k] == '.' && is(s[k+1], cDomain) {
			j = k + 1
			continue
		}
		break
	}
	if end == 0 {
		return 0, 0
	}
	return st, end
}

// matchIBAN recognises an IBAN (mod-97 valid), contiguous or in groups of
// four separated by single spaces.
func matchIBAN(s []byte, i int) int {
	n := len(s)
	if n-i < 15 || !is(s[i+1], cUpper) || !digitsAt(s, i+2, 2) {
		return 0
	}
	up := func(c byte) bool { return is(c, cUpper) || is(c, cDigit) }
	j := i + 4
	if j < n && s[j] == ' ' {
		var ends [9]int
		ng := 0
		for ng < len(ends) && j+1 < n && s[j] == ' ' && up(s[j+1]) {
			k := j + 1
			for k < n && k-j-1 < 5 && up(s[k]) {
				k++
			}
			g := k - j - 1
			if g > 4 || !boundary(s, k) {
				break
			}
			ends[ng] = k
			ng++
			j = k
			if g < 4 {
				break
			}
		}
		for g := ng - 1; g >= 0; g-- {
			if l := ends[g] - i - (g + 1); l >= 15 && l <= 34 && mod97(s[i:ends[g]]) {
				return ends[g]
			}
		}
		return 0
	}
	for j < n && up(s[j]) {
		j++
	}
	if l := j - i; l < 15 || l > 34 || !boundary(s, j) || !mod97(s[i:j]) {
		return 0
	}
	return j
}

// mod97 checks the IBAN checksum of b (spaces ignored).
func mod97(b []byte) bool {
	r := 0
	add := func(c byte) {
		switch {
		case c >= '0' && c <= '9':
			r = (r*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	k := 0
	for _, c := range b[4:] {
		if c != ' ' {
			add(c)
			k++
		}
	}
	for _, c := range b[:4] {
		add(c)
	}
	return r == 1
}

// maxAuthority bounds the look-ahead for a URL's userinfo.
const maxAuthority = 512

// matchURLPassword recognises the password of a URL's userinfo,
// "scheme://user:password@host", at the ":" of "://" at s[i]. Only the
// password is masked; the authority ends at "/", "?", "#", white space or
// a quote, and its last "@" ends the userinfo (a password may hold "@").
func matchURLPassword(s []byte, i int) (start, end int) {
	if !hasPrefixAt(s, i, "://") || i == 0 || !is(s[i-1], cAlnum) {
		return 0, 0
	}
	j := i + 3
	colon, at := -1, -1
	for k := j; k < len(s) && k-j < maxAuthority; k++ {
		switch c := s[k]; {
		case c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\\' || c == '`' || c <= ' ':
			k = len(s)
			continue
		case c == '@':
			at = k
		case c == ':' && colon < 0 && at < 0:
			colon = k
		}
	}
	if at < 0 || colon < 0 || colon > at || at-colon < 2 {
		return 0, 0
	}
	return colon + 1, at
}

// passwordKeys are the names whose "=" value is a password (any case, alone
// or ending a longer name after "_": DB_PASSWORD=, mysql_pwd=).
var passwordKeys = [...]string{"password", "passwd", "pwd"}

// matchPasswordPair recognises "password=value" (also passwd, pwd; spaces
// around "=" and a quoted value allowed) at the "=" at s[i]; the name is
// looked for back to bound. The value is masked up to white space, ";",
// "&", ",", or its closing quote.
func matchPasswordPair(s []byte, i, bound int) (start, end int) {
	k := i
	for k > bound && s[k-1] == ' ' {
		k--
	}
	w := k
	for w > bound && is(s[w-1], cWord) {
		w--
	}
	name := s[w:k]
	ok := false
	for _, p := range passwordKeys {
		if len(name) >= len(p) && bytes.EqualFold(name[len(name)-len(p):], []byte(p)) {
			if st := len(name) - len(p); st == 0 || name[st-1] == '_' {
				ok = true
				break
			}
		}
	}
	if !ok {
		return 0, 0
	}
	j := i + 1
	for j < len(s) && s[j] == ' ' {
		j++
	}
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		q := s[j]
		e := bytes.IndexByte(s[j+1:], q)
		if e < 1 {
			return 0, 0
		}
		return j + 1, j + 1 + e
	}
	e := j
	for e < len(s) {
		if c := s[e]; c <= ' ' || c == ';' || c == '&' || c == ',' || c == '"' || c == '\'' || c == '<' {
			break
		}
		e++
	}
	if e == j {
		return 0, 0
	}
	return j, e
}
