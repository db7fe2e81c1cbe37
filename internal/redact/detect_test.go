package redact

import (
	"strings"
	"testing"
)

func mustCompile(t testing.TB, r Rules) *Redactor {
	t.Helper()
	rd, err := Compile(r)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", r, err)
	}
	return rd
}

const (
	jwt      = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	awsKey   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	ghToken  = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
	pemBlock = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
)

func TestDetectors(t *testing.T) {
	tests := []struct {
		name string
		det  string
		in   string
		want string
	}{
		// credit_card
		{"visa", "credit_card", "card 4111111111111111 ok", "card [REDACTED:credit_card] ok"},
		{"visa spaces", "credit_card", "4111 1111 1111 1111", "[REDACTED:credit_card]"},
		{"visa dashes", "credit_card", "x:4111-1111-1111-1111.", "x:[REDACTED:credit_card]."},
		{"mastercard", "credit_card", "5555555555554444", "[REDACTED:credit_card]"},
		{"mastercard 2-series", "credit_card", "2223003122003222", "[REDACTED:credit_card]"},
		{"amex 4-6-5", "credit_card", "amex 3782 822463 10005", "amex [REDACTED:credit_card]"},
		{"amex", "credit_card", "378282246310005", "[REDACTED:credit_card]"},
		{"discover", "credit_card", "6011111111111117", "[REDACTED:credit_card]"},
		{"diners 14", "credit_card", "30569309025904", "[REDACTED:credit_card]"},
		{"visa 13", "credit_card", "4222222222222", "[REDACTED:credit_card]"},
		{"card then year", "credit_card", "4111 1111 1111 1111 2025", "[REDACTED:credit_card] 2025"},
		{"card then number", "credit_card", "4111111111111111 12", "[REDACTED:credit_card] 12"},
		{"luhn invalid order number", "credit_card", "order 4111111111111112", "order 4111111111111112"},
		{"luhn invalid grouped", "credit_card", "4111 1111 1111 1112", "4111 1111 1111 1112"},
		{"ms timestamp", "credit_card", "1732694400000", "1732694400000"},
		{"too long", "credit_card", "41111111111111111111111", "41111111111111111111111"},
		{"glued to word", "credit_card", "id4111111111111111", "id4111111111111111"},
		{"date", "credit_card", "2024-01-15", "2024-01-15"},
		{"uuid", "credit_card", "123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"},
		{"digit uuid", "credit_card", "41111111-1111-1111-1111-111111111111", "41111111-1111-1111-1111-111111111111"},
		{"list of small numbers", "credit_card", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"},
		// ssn
		{"ssn", "ssn", "ssn: 123-45-6789", "ssn: [REDACTED:ssn]"},
		{"ssn area 000", "ssn", "000-12-3456", "000-12-3456"},
		{"ssn area 666", "ssn", "666-12-3456", "666-12-3456"},
		{"ssn area 9xx", "ssn", "900-12-3456", "900-12-3456"},
		{"ssn group 00", "ssn", "123-00-4567", "123-00-4567"},
		{"ssn serial 0000", "ssn", "123-45-0000", "123-45-0000"},
		{"ssn too long", "ssn", "123-45-67890", "123-45-67890"},
		{"ssn date", "ssn", "2024-01-15", "2024-01-15"},
		// email
		{"email", "email", "mail alice@example.com.", "mail [REDACTED:email]."},
		{"email plus subdomain", "email", "<john.smith+tag@mail.example.co.uk>", "<[REDACTED:email]>"},
		{"email mailto", "email", "mailto:bob_99@ex-ample.org", "mailto:[REDACTED:email]"},
		{"handle", "email", "@alice hi", "@alice hi"},
		{"no tld", "email", "user@localhost", "user@localhost"},
		{"short tld", "email", "foo@bar.c", "foo@bar.c"},
		{"two emails", "email", "a@b.io,c@d.io", "[REDACTED:email],[REDACTED:email]"},
		// phone
		{"e164", "phone", "call +14155552671 now", "call [REDACTED:phone] now"},
		{"e164 spaced", "phone", "+1 415 555 2671", "[REDACTED:phone]"},
		{"uk", "phone", "+44 20 7946 0958", "[REDACTED:phone]"},
		{"uk trunk", "phone", "+44 (0)20 7946 0958", "[REDACTED:phone]"},
		{"nanp parens", "phone", "tel (415) 555-2671", "tel [REDACTED:phone]"},
		{"nanp dashes", "phone", "415-555-2671", "[REDACTED:phone]"},
		{"nanp dots", "phone", "415.555.2671", "[REDACTED:phone]"},
		{"nanp toll free", "phone", "1-800-555-0199", "[REDACTED:phone]"},
		{"phone-like order id", "phone", "order 123-456-7890", "order 123-456-7890"},
		{"mixed separators", "phone", "415-555.2671", "415-555.2671"},
		{"phone date", "phone", "2024-01-15", "2024-01-15"},
		{"short plus", "phone", "+123", "+123"},
		{"version", "phone", "v1.2.3", "v1.2.3"},
		{"bare digits", "phone", "14155552671", "14155552671"},
		{"local", "phone", "555-1234", "555-1234"},
		{"math", "phone", "x+12345678", "x+12345678"},
		// iban
		{"iban", "iban", "DE89370400440532013000", "[REDACTED:iban]"},
		{"iban spaced", "iban", "pay DE89 3704 0044 0532 0130 00 EUR", "pay [REDACTED:iban] EUR"},
		{"iban gb", "iban", "GB82WEST12345698765432", "[REDACTED:iban]"},
		{"iban gb spaced", "iban", "GB82 WEST 1234 5698 7654 32", "[REDACTED:iban]"},
		{"iban bad checksum", "iban", "DE89370400440532013001", "DE89370400440532013001"},
		{"iban spaced bad", "iban", "DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"},
		{"iban-like sku", "iban", "AB12 CDEF", "AB12 CDEF"},
		// secret
		{"stripe live", "secret", "key=sk_live_4eC39HqLyjWDarjtT1zdp7dc", "key=[REDACTED:secret]"},
		{"stripe test", "secret", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:secret]"},
		{"stripe restricted", "secret", "rk_live_51H8abcdefGHIJK", "[REDACTED:secret]"},
		{"aws access key", "secret", "AKIAIOSFODNN7EXAMPLE", "[REDACTED:secret]"},
		{"aws sts key", "secret", "ASIAIOSFODNN7EXAMPLE", "[REDACTED:secret]"},
		{"aws secret", "secret", "aws_secret_access_key = " + awsKey, "aws_secret_access_key = [REDACTED:secret]"},
		{"aws secret env", "secret", "AWS_SECRET_ACCESS_KEY=\"" + awsKey + "\"", "AWS_SECRET_ACCESS_KEY=\"[REDACTED:secret]\""},
		{"github", "secret", "token " + ghToken, "token [REDACTED:secret]"},
		{"github oauth", "secret", "gho_16C7e42F292c6912E7710c838347Ae178B4a", "[REDACTED:secret]"},
		{"github pat", "secret", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[REDACTED:secret]"},
		{"slack", "secret", "xoxb-123456789012-abcdefghijkl", "[REDACTED:secret]"},
		{"openai", "secret", "sk-proj-abc123DEF456ghi789JKL012mno", "[REDACTED:secret]"},
		{"openai legacy", "secret", "sk-T3BlbkFJabcdefghij1234567890", "[REDACTED:secret]"},
		{"google", "secret", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "[REDACTED:secret]"},
		{"pem", "secret", "k: " + pemBlock + " end", "k: [REDACTED:secret] end"},
		{"pem unterminated", "secret", "-----BEGIN PRIVATE KEY-----\nMIIE...", "[REDACTED:secret]"},
		{"certificate", "secret", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		{"jwt", "secret", "t=" + jwt + ";", "t=[REDACTED:secret];"},
		{"bearer", "secret", "Authorization: Bearer abcdef123456", "Authorization: Bearer [REDACTED:secret]"},
		{"bearer lower", "secret", "bearer   zzzzzzzzzzzz", "bearer   [REDACTED:secret]"},
		{"bearer prose", "secret", "Bearer of bad news", "Bearer of bad news"},
		{"words starting with sk", "secret", "skate sketch sk-learn sk_live sky-blue-with-no-digits-at-all", "skate sketch sk-learn sk_live sky-blue-with-no-digits-at-all"},
		{"sk- words", "secret", "sk-learn-contributors-guide-extended", "sk-learn-contributors-guide-extended"},
		{"short github", "secret", "ghp_short", "ghp_short"},
		{"akia short", "secret", "AKIA1234", "AKIA1234"},
		{"lone jwt header", "secret", "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9"},
		// disabled detectors leave data alone
		{"card not enabled", "ssn", "4111111111111111", "4111111111111111"},
		// Credentials in URLs, password= pairs, private keys: the attack was
		// an upstream 500 body with a connection string.
		{"postgres url", "secret", "dial postgres://admin:hunter2@10.0.0.5/crm failed", "dial postgres://admin:[REDACTED:secret]@10.0.0.5/crm failed"},
		{"url password with @", "secret", "redis://:p@ss@cache:6379/0", "redis://:[REDACTED:secret]@cache:6379/0"},
		{"https userinfo", "secret", "GET https://bot:s3cr%40t@api.example.com?x=1", "GET https://bot:[REDACTED:secret]@api.example.com?x=1"},
		{"mongodb+srv", "secret", `"mongodb+srv://u:pw0rd@c0.mongodb.net"`, `"mongodb+srv://u:[REDACTED:secret]@c0.mongodb.net"`},
		{"password pair", "secret", "Server=db;User Id=sa;Password=hunter2;Encrypt=true", "Server=db;User Id=sa;Password=[REDACTED:secret];Encrypt=true"},
		{"pwd pair", "secret", "uid=sa&pwd=Tr0ub4dor&3", "uid=sa&pwd=[REDACTED:secret]&3"},
		{"passwd env", "secret", "export DB_PASSWD = 'correct horse'", "export DB_PASSWD = '[REDACTED:secret]'"},
		{"password in query", "secret", "/login?user=a&password=hunter2 HTTP/1.1", "/login?user=a&password=[REDACTED:secret] HTTP/1.1"},
		{"private key block", "secret", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\nafter", "[REDACTED:secret]\nafter"},
		{"plain url untouched", "secret", "see https://example.com/a/b?c=d#e and http://host:8080/x", "see https://example.com/a/b?c=d#e and http://host:8080/x"},
		{"url with user only untouched", "secret", "ssh://git@github.com/acme/repo.git", "ssh://git@github.com/acme/repo.git"},
		{"at in path untouched", "secret", "https://host:443/users/@alice:x", "https://host:443/users/@alice:x"},
		{"mailto untouched", "secret", "mailto:alice:x@example.com", "mailto:alice:x@example.com"},
		{"password prose untouched", "secret", "password reset sent; passwords=3; nopassword=1; password=", "password reset sent; passwords=3; nopassword=1; password="},
		{"email not enabled", "secret", "alice@example.com", "alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := mustCompile(t, Rules{Detectors: []string{tt.det}})
			got, rep := rd.Text(tt.in)
			if got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
			}
			wantN := strings.Count(tt.want, "[REDACTED:")
			if rep.Total() != wantN || rep.Counts[tt.det] != wantN {
				t.Errorf("report %+v, want %d %s", rep, wantN, tt.det)
			}
		})
	}
}

func TestAllDetectorsTogether(t *testing.T) {
	rd := mustCompile(t, Rules{Detectors: KnownDetectors()})
	in := "Alice <alice@example.com>, +1 415 555 2671, card 4111-1111-1111-1111, ssn 123-45-6789, iban DE89370400440532013000, key " + ghToken
	got, rep := rd.Text(in)
	want := "Alice <[REDACTED:email]>, [REDACTED:phone], card [REDACTED:credit_card], ssn [REDACTED:ssn], iban [REDACTED:iban], key [REDACTED:secret]"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if rep.Total() != 6 || len(rep.Counts) != 6 {
		t.Errorf("report %+v", rep)
	}
	plain := "nothing to see here: order 12345, 2024-01-15, v1.2.3, 42 items"
	if got, rep := rd.Text(plain); got != plain || rep.Total() != 0 || rep.Counts != nil {
		t.Errorf("Text(%q) = %q, %+v", plain, got, rep)
	}
}

func TestCompile(t *testing.T) {
	tests := []struct {
		name    string
		rules   Rules
		wantErr string
	}{
		{"zero", Rules{}, ""},
		{"all detectors", Rules{Detectors: KnownDetectors()}, ""},
		{"unknown detector", Rules{Detectors: []string{"secret", "passport"}}, `unknown detector "passport" (known: secret, credit_card, ssn, email, phone, iban)`},
		{"paths", Rules{Paths: []string{"card_number", "orders[*].iban", "[*].customer.ssn", "a.*.b", "m[*][*]"}}, ""},
		{"empty path", Rules{Paths: []string{""}}, "empty"},
		{"index", Rules{Paths: []string{"orders[0].iban"}}, "only [*]"},
		{"empty segment", Rules{Paths: []string{"a..b"}}, "empty segment"},
		{"trailing dot", Rules{Paths: []string{"a."}}, "empty segment"},
		{"lone star", Rules{Paths: []string{"*"}}, "lone *"},
		{"stray bracket", Rules{Paths: []string{"a]b.c"}}, "unexpected"},
		{"missing dot", Rules{Paths: []string{"[*]a"}}, "expected ."},
		{"all problems", Rules{Paths: []string{"a..b"}, Detectors: []string{"x"}}, "unknown detector \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.rules)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
	_, err := Compile(Rules{Paths: []string{"a..b"}, Detectors: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), "empty segment") {
		t.Errorf("want both problems reported, got %v", err)
	}
}

func TestMaskAndReport(t *testing.T) {
	if mustCompile(t, Rules{}).HasContext() || !mustCompile(t, Rules{Context: tenantCtx}).HasContext() {
		t.Error("HasContext")
	}
	if got := Mask(KindCreditCard); got != "[REDACTED:credit_card]" {
		t.Errorf("Mask = %q", got)
	}
	if got := (Report{Counts: map[string]int{"a": 2, "b": 3}}).Total(); got != 5 {
		t.Errorf("Total = %d", got)
	}
	rd := mustCompile(t, Rules{Detectors: []string{"ssn", "secret", "ssn"}})
	if got := strings.Join(rd.Detectors(), ","); got != "secret,ssn" {
		t.Errorf("Detectors = %q", got)
	}
}
