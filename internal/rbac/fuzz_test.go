package rbac

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// FuzzSuggest: for any records the decoder accepts, every rule granted covers only
// (scope, group, resource, verb) tuples that were recorded as used, every used tuple is
// covered, and the YAML and JSON outputs parse back to the same objects.
func FuzzSuggest(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		if !strings.HasSuffix(p, ".golden.json") {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		records, err := accessrecord.Decode(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		used := map[[5]string]bool{}
		for _, r := range records {
			for _, q := range r.Requests {
				if q.Outcome != accessrecord.Allowed && q.Outcome != accessrecord.Failed {
					continue
				}
				tg, scope := targetOf(q)
				used[[5]string{r.Namespace + "/" + r.ServiceAccount, scope, tg.group, tg.resource + tg.url, q.Verb}] = true
				if q.Verb == "get" && tg.group == "" && q.Resource == "pods" && slices.Contains(upgradeSubresources, q.Subresource) {
					used[[5]string{r.Namespace + "/" + r.ServiceAccount, scope, tg.group, tg.resource, "create"}] = true
				}
			}
		}
		suggestions := Build(records)
		covered := map[[5]string]bool{}
		var objects []any
		for _, s := range suggestions {
			for _, g := range s.Grants {
				for _, r := range g.Rules {
					groups := r.APIGroups
					if len(r.NonResourceURLs) > 0 {
						groups = []string{""}
					}
					for _, grp := range groups {
						for _, res := range append(append([]string{}, r.Resources...), r.NonResourceURLs...) {
							for _, v := range r.Verbs {
								k := [5]string{s.ServiceAccount.String(), g.Namespace, grp, res, v}
								if !used[k] {
									t.Fatalf("rule %+v in scope %q grants %v, which was not used", r, g.Namespace, k)
								}
								covered[k] = true
							}
						}
					}
				}
			}
			objects = append(objects, s.Objects()...)
		}
		for k := range used {
			if !covered[k] {
				t.Fatalf("used %v is not granted", k)
			}
		}
		var y bytes.Buffer
		if err := WriteYAML(&y, suggestions); err != nil {
			t.Fatal(err)
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(&y))
		var docs []map[string]any
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the YAML output does not parse: %v", err)
			}
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("a YAML document does not parse: %v\n%s", err, doc)
			}
			if m != nil {
				docs = append(docs, m)
			}
		}
		if len(docs) != len(objects) {
			t.Fatalf("YAML holds %d objects, want %d", len(docs), len(objects))
		}
		var j bytes.Buffer
		if err := WriteJSON(&j, suggestions); err != nil {
			t.Fatal(err)
		}
		var report struct {
			Objects struct {
				Items []map[string]any `json:"items"`
			} `json:"objects"`
		}
		if err := json.Unmarshal(j.Bytes(), &report); err != nil {
			t.Fatalf("the JSON output does not parse: %v", err)
		}
		for i, o := range objects {
			want, err := clean(o)
			if err != nil {
				t.Fatal(err)
			}
			wb, _ := json.Marshal(want)
			yb, _ := json.Marshal(docs[i])
			jb, _ := json.Marshal(report.Objects.Items[i])
			if string(wb) != string(yb) || string(wb) != string(jb) {
				t.Fatalf("object %d differs:\nwant %s\nyaml %s\njson %s", i, wb, yb, jb)
			}
		}
	})
}
