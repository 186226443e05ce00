package accessrecord

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const good = `{"apiVersion":"apiaccess.io/v1alpha1","kind":"AccessRecord","namespace":"shop","serviceAccount":"app","pod":"web-1",
"since":"2026-11-30T17:00:00Z","requests":[
 {"verb":"list","apiGroup":"","resource":"pods","subresource":"","namespace":"shop","nonResourceURL":"","outcome":"allowed","count":3,"lastSeen":"2026-11-30T18:00:00Z"},
 {"verb":"get","apiGroup":"","resource":"","subresource":"","namespace":"","nonResourceURL":"/version","outcome":"allowed","count":1,"lastSeen":"2026-11-30T18:00:00Z"}],
"otherCount":0,"truncated":false,"aFieldFromANewerSidecar":1}`

func TestDecode(t *testing.T) {
	since := time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)
	seen := time.Date(2026, 11, 30, 18, 0, 0, 0, time.UTC)
	want := Record{APIVersion: APIVersion, Kind: Kind, Namespace: "shop", ServiceAccount: "app", Pod: "web-1", Since: since, Requests: []Request{
		{Verb: "list", Resource: "pods", Namespace: "shop", Outcome: Allowed, Count: 3, LastSeen: seen},
		{Verb: "get", NonResourceURL: "/version", Outcome: Allowed, Count: 1, LastSeen: seen},
	}}
	for _, tc := range []struct {
		name, in string
		want     int
	}{
		{"one", good, 1},
		{"concatenated, as several runs print", good + "\n" + good + good, 3},
		{"an array", "[" + good + "," + good + "]", 2},
		{"both", "[" + good + "]\n" + good, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(strings.NewReader(tc.in), "in")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d records, want %d", len(got), tc.want)
			}
			for _, r := range got {
				if diff := cmp.Diff(want, r); diff != "" {
					t.Errorf("record (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestDecodeErrors: each mistake is named with its record, field, value and what is allowed;
// all mistakes of a record at once.
func TestDecodeErrors(t *testing.T) {
	req := func(fields string) string {
		return strings.Replace(good, `{"verb":"list","apiGroup":"","resource":"pods","subresource":"","namespace":"shop","nonResourceURL":"","outcome":"allowed","count":3,"lastSeen":"2026-11-30T18:00:00Z"}`,
			"{"+strings.TrimSuffix(fields, ",")+"}", 1)
	}
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{`in holds no AccessRecord: give what ` + "`api-proxy access -o json`" + ` printed`}},
		{"not JSON", "apiVersion: v1", []string{`in: record 1: not JSON`}},
		{"not an object", "[1]", []string{`in: record 1: not an AccessRecord`}},
		{"second record bad", good + strings.Replace(good, `"kind":"AccessRecord"`, `"kind":"Pod"`, 1),
			[]string{`in: record 2 (pod "web-1"): kind: "Pod": must be AccessRecord`}},
		{"header", strings.NewReplacer(`"apiaccess.io/v1alpha1"`, `"v1"`, `"namespace":"shop","serviceAccount":"app"`, `"namespace":"Shop","serviceAccount":""`,
			`"otherCount":0`, `"otherCount":-1`).Replace(good), []string{
			`apiVersion: "v1": must be apiaccess.io/v1alpha1`,
			`namespace: "Shop": must be a namespace name (lower-case RFC 1123 label)`,
			`serviceAccount: "": must be a ServiceAccount name`,
			`otherCount: "-1": must not be negative`,
		}},
		{"outcome", req(`"verb":"list","resource":"pods","outcome":"ok",`), []string{
			`requests[0].outcome: "ok": must be one of allowed, forbidden, unauthorized, refused, failed`}},
		{"verb", req(`"verb":"LIST","resource":"pods","outcome":"allowed",`), []string{`requests[0].verb: "LIST": must be a lower-case verb`}},
		{"no resource, no URL", req(`"verb":"get","outcome":"allowed",`), []string{
			`requests[0].resource: "": must be a lower-case plural resource name, or nonResourceURL must be set`}},
		{"URL with a resource", req(`"verb":"get","resource":"pods","nonResourceURL":"/version","outcome":"allowed",`), []string{
			`requests[0].nonResourceURL: "/version": must not come with apiGroup, resource, subresource or namespace`}},
		{"URL not a path", req(`"verb":"get","nonResourceURL":"version?x=1","outcome":"allowed",`), []string{
			`requests[0].nonResourceURL: "version?x=1": must be a path starting with / (no query)`}},
		{"bad group, subresource, namespace, count", req(`"verb":"get","resource":"pods","apiGroup":"Apps","subresource":"Log","namespace":"a_b","count":-2,"outcome":"allowed",`), []string{
			`requests[0].subresource: "Log"`, `requests[0].apiGroup: "Apps"`, `requests[0].namespace: "a_b"`, `requests[0].count: "-2": must not be negative`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.in), "in")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// FuzzDecode: whatever the input, Decode returns records that validate and survive a round
// trip through JSON unchanged, or an error; it never panics.
func FuzzDecode(f *testing.F) {
	f.Add(good)
	f.Add("[" + good + "," + good + "]")
	f.Add(`{"apiVersion":"apiaccess.io/v1alpha1","kind":"AccessRecord","namespace":"a","serviceAccount":"b","requests":[{"verb":"get","nonResourceURL":"/","outcome":"failed"}]}`)
	f.Add(`[]`)
	f.Add(`{"requests":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		records, err := Decode(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		if len(records) == 0 {
			t.Fatal("no error and no record")
		}
		for _, r := range records {
			if err := r.Validate(); err != nil {
				t.Fatalf("decoded a record that does not validate: %v", err)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Decode(bytes.NewReader(b), "again")
			if err != nil {
				t.Fatalf("a decoded record does not decode again: %v\n%s", err, b)
			}
			if diff := cmp.Diff(r, again[0]); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		}
	})
}
