package config

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecodeTOML feeds arbitrary documents to the file decoder. Whatever it
// accepts must survive a round trip: written back by Write in each format
// and decoded again, it gives the same Config.
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
		"public = \"a\\u0001\\\"b\\\\ \\t<&>\\u2028é\"\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, errs := decodeTOML(data)
		if len(errs) > 0 {
			return
		}
		c := Default()
		apply(&c, vals)
		for _, format := range Formats {
			var buf bytes.Buffer
			if err := Write(&buf, c, WriteOptions{Format: format, ShowSecrets: true}); err != nil {
				t.Fatalf("writing %+v as %s: %v", c, format, err)
			}
			decode := map[string]func([]byte) (map[int]reflect.Value, []error){
				FormatTOML: decodeTOML, FormatYAML: decodeYAML, FormatJSON: decodeJSON,
			}[format]
			vals, errs := decode(buf.Bytes())
			if len(errs) > 0 {
				t.Fatalf("decoding the config written as %s: %v\n%s", format, errs, buf.Bytes())
			}
			again := Default()
			apply(&again, vals)
			if !reflect.DeepEqual(normalize(c), normalize(again)) {
				t.Fatalf("%s round trip changed the config:\nfirst  %+v\nsecond %+v\nfrom %q\nvia\n%s", format, c, again, data, buf.Bytes())
			}
		}
	})
}

// normalize makes empty lists nil, which a file cannot tell apart.
func normalize(c Config) Config {
	if len(c.AllowedOrigins) == 0 {
		c.AllowedOrigins = nil
	}
	if len(c.Subprotocols) == 0 {
		c.Subprotocols = nil
	}
	return c
}
