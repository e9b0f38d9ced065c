package config

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzDecodeTOML feeds arbitrary documents to the file decoder. Whatever it
// accepts must survive a round trip: encoded back to TOML and decoded again,
// it gives the same Config.
func FuzzDecodeTOML(f *testing.F) {
	for _, seed := range []string{
		"",
		"port = 8080\naddress = \"::1\"\n",
		"shutdown_timeout = \"1m30s\"\nheader_timeout = \"5s\"\nidle_timeout = \"0s\"\n",
		"allowed_origins = [\"https://example.com\", \"https://*.example.com\"]\n",
		"compression = true\ncompression_level = 9\nlog_format = \"json\"\n",
		"max_msg_size = 1099511627776\ntimeout = 255\n",
		"prot = 1\n",
		"[server]\nport = 1\n",
		"idle_timeout = 60\n",
		"port = \"abc\"\n",
		"port = \n",
		"allowed_origins = []\npublic = \"\"\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := decodeTOML("fuzz.toml", data, &c); err != nil {
			return
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(c); err != nil {
			t.Fatalf("encoding %+v: %v", c, err)
		}
		again := Default()
		if err := decodeTOML("again.toml", buf.Bytes(), &again); err != nil {
			t.Fatalf("decoding the re-encoded config: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the config:\nfirst  %+v\nsecond %+v\nfrom %q", c, again, data)
		}
	})
}
