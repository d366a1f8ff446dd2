package config

import (
	"fmt"
	"testing"
)

func TestPasswords(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want []string
	}{
		{"postgres://quiz:s3cret@db:5432/q", []string{"s3cret"}},
		{"postgres://quiz:p%40ss@db/q", []string{"p%40ss", "p@ss"}},
		{"postgres://quiz@db/q?password=qp1&sslmode=require", []string{"qp1"}},
		{"amqp://guest:guest@rabbit:5672/", []string{"guest"}},
		{"host=db user=quiz password='sec ret' dbname=q", []string{"sec ret"}},
		{"host=db user=quiz password=plain dbname=q", []string{"plain"}},
		{"postgres://db/q", nil},
	} {
		if got := Passwords(tc.raw); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Passwords(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}
