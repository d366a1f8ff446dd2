package testenv

import (
	"fmt"
	"net/url"
	"strings"
)

// SecretParts are what a leak of any part of a SpecialPasswords password
// shows: the passwords are built from them, around the characters under
// test. A text that holds none of them holds no part of those passwords.
var SecretParts = []string{"lpha7", "ravo8"}

// ShowsSecret reports whether text holds a part of a SpecialPasswords
// password, and which.
// The parts are looked for as they are and percent-encoded byte by byte,
// the form of SpecialPasswords that spells no letter out.
func ShowsSecret(text string) (string, bool) {
	for _, p := range SecretParts {
		for _, form := range []string{p, encodeAll(p), strings.ToLower(encodeAll(p))} {
			if strings.Contains(text, form) {
				return form, true
			}
		}
	}
	return "", false
}

// specialChars are the characters that URLs give a meaning to, and that
// passwords hold all the same, as they are and percent-encoded.
var specialChars = []string{"/", "@", ":", "%", "#", "?", " ", ",", "%2F", "%40", "%3a"}

// SpecialPasswords returns passwords around each character that URLs give
// a meaning to, each written the ways users write them into a URL: as it is,
// percent-encoded (as a query, as a path, every byte, in lower-case hex),
// and with digits first, so that a mislaid '/', '?' or '#' leaves a valid
// port behind. With short, the as-it-is and fully encoded forms only.
func SpecialPasswords(short bool) []string {
	var out []string
	for _, c := range specialChars {
		for _, pw := range []string{"Alpha7" + c + "Bravo8", "1234" + c + "Bravo8"} {
			if short {
				out = append(out, pw, encodeAll(pw))
				continue
			}
			out = append(out, pw, url.QueryEscape(pw), url.PathEscape(pw), encodeAll(pw), strings.ToLower(encodeAll(pw)))
		}
	}
	return out
}

// encodeAll percent-encodes every byte of s.
func encodeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}
