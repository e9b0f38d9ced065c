package worker

import (
	"regexp"
	"strings"
	"testing"
)

func TestPubSubChannelNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lobby", true},
		{"chat:room-42", true},
		{"user.1234_x", true},
		{"A-Z_a.z:0-9", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a b", false},
		{"a/b", false},
		{"café", false},
		{"a*", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		if err := checkChannel([]byte(tt.name)); (err == nil) != tt.ok {
			t.Errorf("checkChannel(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestPubSubBearer(t *testing.T) {
	tests := []struct {
		header string
		ok     bool
	}{
		{"Bearer s3cret", true},
		{"bearer s3cret", true},
		{"BEARER  s3cret ", true},
		{"", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"Bearer s3cre", false},
		{"Bearer s3cret2", false},
		{"Basic s3cret", false},
		{"s3cret", false},
	}
	for _, tt := range tests {
		if err := checkBearer([]byte(tt.header), "s3cret"); (err == nil) != tt.ok {
			t.Errorf("checkBearer(%q) = %v, want ok %v", tt.header, err, tt.ok)
		}
	}
}

// FuzzPubSubChannel checks the channel name rule against its definition.
func FuzzPubSubChannel(f *testing.F) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	for _, s := range []string{"lobby", "", "a b", "é", strings.Repeat("z", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := checkChannel([]byte(name)) == nil, valid.MatchString(name); got != want {
			t.Errorf("checkChannel(%q) ok = %v, want %v", name, got, want)
		}
	})
}
