package images

import (
	"strings"
	"testing"
)

// metadata.yaml comes from any image a user imports or downloads: whatever
// it holds, ParseMetadata returns an error or metadata the daemon can use
// (an architecture, every template naming its file), and never panics.
func FuzzParseMetadata(f *testing.F) {
	for _, seed := range []string{
		"architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  description: Debian bookworm\n",
		"architecture: aarch64\ntemplates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n    create_only: true\n    properties:\n      default: cell\n",
		"architecture: x86_64\nexpiry_date: 1900000000\ntemplates:\n  /etc/hosts:\n    when: [start]\n    template: hosts.tpl\n",
		"creation_date: 1\n",
		"architecture: [\n",
		"architecture: x86_64\ntemplates:\n  /etc/hostname:\n    when: [create]\n",
		"architecture: x86_64\ntemplates:\n  /etc/hostname: null\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := ParseMetadata(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if md.Architecture == "" {
			t.Errorf("accepted metadata without an architecture: %q", data)
		}
		for path, tpl := range md.Templates {
			if tpl == nil || tpl.Template == "" {
				t.Errorf("accepted template %q without a file: %q", path, data)
			}
		}
	})
}
