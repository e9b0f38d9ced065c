package main

import (
	"bytes"
	"os"
	"testing"
)

// TestReferenceUpToDate fails when docs/configuration.md is not what gendoc
// writes from the settings, as after a setting is added or its help changed.
func TestReferenceUpToDate(t *testing.T) {
	const name = "../../../docs/configuration.md"
	var want bytes.Buffer
	if err := write(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("%s is out of date; run go generate ./config", name)
	}
}
